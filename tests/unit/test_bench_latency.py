"""The latency benchmark's pure parts: percentiles, the report, the probes."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from pipeline.core.partitioning import partition_for
from pipeline.settings_loader import build_settings
from pipeline.tools.bench_latency import (
    LATE_REPLY_BEFORE_MS,
    PROBE_POLICY,
    PROBE_TARGET_S,
    LatencyReport,
    bench_config,
    late_reply,
    percentile,
    probe_event,
)


def sla(kind: str, **fields: object) -> dict[str, object]:
    return {
        "kind": kind,
        "policy": "chat_first_reply",
        "fired_at": 10_000,
        "deadline": 10_000,
        "replied_at": None,
        **fields,
    }


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


def test_report_measures_warnings_and_breaches_from_their_due_time() -> None:
    report = LatencyReport()
    report.observe(sla("warning", fired_at=5_000), read_ms=5_400)
    report.observe(sla("breach", policy=PROBE_POLICY), read_ms=16_000)
    report.observe(sla("completed", replied_at=12_000), read_ms=16_100)
    assert report.latencies == {"warning": [0.4], "breach": [6.0]}
    assert report.probe_latencies == [6.0]
    assert report.probe_breaches == 1
    assert report.retractable == 0


def test_report_counts_a_reply_dated_before_the_deadline_as_retractable() -> None:
    report = LatencyReport()
    replied = datetime.fromtimestamp(9.5, tz=UTC)
    report.observe(sla("completed", replied_at=replied), read_ms=11_000)
    report.observe(sla("completed", replied_at=10_000), read_ms=11_000)
    assert report.retractable == 1


def test_report_counts_retractions_and_those_of_the_probes() -> None:
    report = LatencyReport()
    report.observe(sla("retracted", policy=PROBE_POLICY, replied_at=9_900), read_ms=10_600)
    report.observe(sla("retracted", replied_at=9_000), read_ms=10_600)
    assert (report.retractions, report.probe_retractions) == (2, 1)
    assert report.latencies == {"warning": [], "breach": []}


def test_report_line_names_the_figures() -> None:
    report = LatencyReport(probes=3, late_replies=1)
    report.observe(sla("breach"), read_ms=10_700)
    report.observe(sla("retracted", policy=PROBE_POLICY), read_ms=10_900)
    assert report.line(skew_s=0.0) == (
        "bench latency breach_latency_p50_s=0.70 breach_latency_p99_s=0.70 "
        "breach_latency_max_s=0.70 breaches=1 warnings=0 retractions=1 probes=3 "
        "probe_breaches=0 probe_p99_s=nan late_replies=1 probe_retractions=1 retractable=0 "
        "allowed_skew_s=0"
    )


def test_a_late_reply_is_dated_just_before_its_probes_deadline_on_the_same_contact() -> None:
    probe = probe_event(7, 1_000, 6, "run")
    reply = late_reply(probe)
    assert (reply.customer_id, reply.contact_id, reply.type, reply.actor) == (
        probe.customer_id,
        probe.contact_id,
        "agent_reply",
        "agent",
    )
    assert reply.occurred_at == 1_000 + PROBE_TARGET_S * 1000 - LATE_REPLY_BEFORE_MS


def test_bench_config_runs_live_on_the_bench_broker_with_the_probe_policy() -> None:
    config = bench_config(build_settings(), "127.0.0.1:9999", "latencyx", 7001)
    settings = build_settings(config)
    assert settings.kafka.bootstrap == "127.0.0.1:9999"
    assert settings.kafka.topic_prefix == "latencyx"
    assert settings.worker.clock == "live"
    assert settings.worker.web_port == 7001
    probe = [p for p in settings.policies if p.name == PROBE_POLICY]
    assert [(p.channel, p.topic, p.target_seconds) for p in probe] == [
        ("chat", "latency_probe", 10.0)
    ]


def test_probes_cycle_through_every_partition() -> None:
    probes = [probe_event(n, 1_000, 6, "run") for n in range(12)]
    assert [partition_for(p.customer_id, 6) for p in probes] == [0, 1, 2, 3, 4, 5] * 2
    assert len({p.customer_id for p in probes}) == 12
