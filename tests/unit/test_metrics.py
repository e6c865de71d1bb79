"""The Metrics facade moves the right series and follows Prometheus conventions."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.core.identity import IdentityMeasures
from pipeline.core.records import (
    ContactSummary,
    JourneySignal,
    LateEvent,
    SessionRecord,
    SlaEvent,
)
from pipeline.metrics import Metrics

CHANNELS = ("branch", "phone", "chat", "web_meeting", "web_message")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, channels=CHANNELS)


def sla_event(**overrides: Any) -> SlaEvent:
    fields: dict[str, Any] = {
        "sla_event_id": "c1:web_message_first_reply:first_reply:0:breach",
        "kind": "breach",
        "customer_id": "cust-1",
        "contact_id": "c1",
        "channel": "web_message",
        "policy": "web_message_first_reply",
        "metric": "first_reply",
        "clock_started_at": 0,
        "deadline": 7_200_000,
        "target_seconds": 7200.0,
        "calendar": "24x7",
        "fired_at": 7_200_000,
    }
    return SlaEvent(**(fields | overrides))


def session(**overrides: Any) -> SessionRecord:
    fields: dict[str, Any] = {
        "session_id": "s1",
        "customer_id": "cust-1",
        "status": "final",
        "started_at": 0,
        "ended_at": 60_000,
        "channel_path": ["chat", "phone"],
        "contacts": 2,
        "events": 7,
        "channel_switches": 1,
        "first_contact_resolved": False,
        "resolved_at_end": True,
        "switch_failures": 1,
        "sla_breaches": 0,
        "nps_score": None,
    }
    return SessionRecord(**(fields | overrides))


def contact(**overrides: Any) -> ContactSummary:
    fields: dict[str, Any] = {
        "contact_id": "c1",
        "customer_id": "cust-1",
        "channel": "chat",
        "session_id": "s1",
        "started_at": 0,
        "ended_at": 120_000,
        "outcome": "resolved",
        "topic": "cards",
        "first_reply_seconds": 42.0,
        "first_reply_business_seconds": 42.0,
        "breached": False,
        "events": 4,
        "version": 1,
        "first_reply_new": True,
    }
    return ContactSummary(**(fields | overrides))


def signal(**overrides: Any) -> JourneySignal:
    fields: dict[str, Any] = {
        "signal_id": "c1->c2:switch_failure",
        "kind": "switch_failure",
        "customer_id": "cust-1",
        "from_contact_id": "c1",
        "from_channel": "chat",
        "from_outcome": "unresolved",
        "to_contact_id": "c2",
        "to_channel": "phone",
        "gap_seconds": 300.0,
        "topic": "cards",
        "occurred_at": 400_000,
    }
    return JourneySignal(**(fields | overrides))


def late_event(channel: str = "chat") -> LateEvent:
    return LateEvent(
        event_id="e1",
        customer_id="cust-1",
        occurred_at=0,
        clock_at=3_600_000,
        reason="session_closed",
        event={"channel": channel, "event_id": "e1"},
    )


def events_consumed(registry: CollectorRegistry, channel: str, type_: str) -> float | None:
    """``cxstream_events_consumed_total`` for one channel and event type (None if absent)."""
    return registry.get_sample_value(
        "cxstream_events_consumed_total", {"channel": channel, "type": type_}
    )


def test_observe_event_counts_per_channel_and_type(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_event("chat", "customer_message")
    metrics.observe_event("chat", "customer_message")
    metrics.observe_event("phone", "contact_started")

    chat = events_consumed(registry, "chat", "customer_message")
    phone = events_consumed(registry, "phone", "contact_started")
    assert (chat, phone) == (2.0, 1.0)


def test_a_batch_of_event_counts_adds_to_the_same_series_as_single_events(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_event("chat", "customer_message")
    metrics.observe_events({("chat", "customer_message"): 4, ("phone", "contact_started"): 2})

    chat = events_consumed(registry, "chat", "customer_message")
    phone = events_consumed(registry, "phone", "contact_started")
    assert (chat, phone) == (5.0, 2.0)


def test_unconfigured_channel_and_unknown_type_are_folded_to_bounded_labels(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_event("carrier_pigeon", "coo")

    assert events_consumed(registry, "other", "unknown") == 1.0


@pytest.mark.parametrize(
    ("kind", "series"),
    [
        ("warning", "cxstream_sla_warnings_total"),
        ("breach", "cxstream_sla_breaches_total"),
        ("completed", "cxstream_sla_completed_total"),
    ],
)
def test_sla_event_kind_moves_its_own_counter(
    metrics: Metrics, registry: CollectorRegistry, kind: str, series: str
) -> None:
    metrics.observe_output(sla_event(kind=kind))

    labels = {"channel": "web_message", "policy": "web_message_first_reply"}
    counts = {
        name: registry.get_sample_value(name, labels)
        for name in (
            "cxstream_sla_warnings_total",
            "cxstream_sla_breaches_total",
            "cxstream_sla_completed_total",
        )
    }
    assert counts == {name: (1.0 if name == series else None) for name in counts}


def test_contact_first_reply_lands_in_the_channel_histogram(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_output(contact(first_reply_seconds=42.0))
    metrics.observe_output(contact(contact_id="c2", first_reply_seconds=None))

    labels = {"channel": "chat"}
    count = registry.get_sample_value("cxstream_first_reply_seconds_count", labels)
    total = registry.get_sample_value("cxstream_first_reply_seconds_sum", labels)
    under_minute = registry.get_sample_value(
        "cxstream_first_reply_seconds_bucket", {"channel": "chat", "le": "60.0"}
    )
    under_half_minute = registry.get_sample_value(
        "cxstream_first_reply_seconds_bucket", {"channel": "chat", "le": "30.0"}
    )
    assert (count, total, under_minute, under_half_minute) == (1.0, 42.0, 1.0, 0.0)


def test_first_reply_buckets_reach_two_days(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.observe_output(contact(channel="web_message", first_reply_seconds=100_000.0))

    value = registry.get_sample_value(
        "cxstream_first_reply_seconds_bucket", {"channel": "web_message", "le": "172800.0"}
    )
    assert value == 1.0


def test_switch_failure_counts_from_and_to_channel(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_output(signal())

    value = registry.get_sample_value(
        "cxstream_channel_switch_failures_total", {"from_channel": "chat", "to_channel": "phone"}
    )
    assert value == 1.0


def test_false_resolution_counts_on_the_channel_that_claimed_resolution(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_output(signal(kind="false_resolution", to_channel="chat"))

    value = registry.get_sample_value("cxstream_false_resolutions_total", {"channel": "chat"})
    switches = registry.get_sample_value(
        "cxstream_channel_switch_failures_total", {"from_channel": "chat", "to_channel": "chat"}
    )
    assert (value, switches) == (1.0, None)


def test_only_final_and_superseded_sessions_are_counted(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_output(session(status="open"))
    metrics.observe_output(session(status="open", version=1))
    metrics.observe_output(session(status="final", version=2))
    metrics.observe_output(session(session_id="s2", status="superseded"))

    closed = registry.get_sample_value("cxstream_sessions_closed_total")
    superseded = registry.get_sample_value("cxstream_sessions_superseded_total")
    assert (closed, superseded) == (1.0, 1.0)


def test_late_event_counts_on_the_channel_of_the_raw_event(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    late = late_event(channel="branch")
    metrics.observe_output(late)

    assert registry.get_sample_value("cxstream_late_events_total", {"channel": "branch"}) == 1.0


def test_dead_letters_duplicates_rekeys_and_redeliveries_are_counted(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.dead_letter("decode", "DecodeError")
    metrics.duplicate_event("chat")
    metrics.rekeyed_event()
    metrics.redelivered_record()

    values = (
        registry.get_sample_value(
            "cxstream_dead_letters_total", {"stage": "decode", "reason": "DecodeError"}
        ),
        registry.get_sample_value("cxstream_duplicate_events_total", {"channel": "chat"}),
        registry.get_sample_value("cxstream_rekeyed_events_total"),
        registry.get_sample_value("cxstream_redelivered_records_total"),
    )
    assert values == (1.0, 1.0, 1.0, 1.0)


def test_gauges_hold_the_last_value_set(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.set_open_sessions(12)
    metrics.set_open_sessions(7)
    metrics.set_oldest_unanswered("web_message", 6600.0, 0.9166)
    metrics.set_lag("cx.interactions", 3, 250)
    metrics.set_stream_time(3, 1_700_000_000.5)

    values = (
        registry.get_sample_value("cxstream_open_sessions"),
        registry.get_sample_value("cxstream_oldest_unanswered_seconds", {"channel": "web_message"}),
        registry.get_sample_value(
            "cxstream_sla_oldest_unanswered_deadline_ratio", {"channel": "web_message"}
        ),
        registry.get_sample_value(
            "cxstream_consumer_lag", {"topic": "cx.interactions", "partition": "3"}
        ),
        registry.get_sample_value("cxstream_stream_time_seconds", {"partition": "3"}),
    )
    assert values == (7.0, 6600.0, 0.9166, 250.0, 1_700_000_000.5)


def test_negative_processing_latency_counts_as_zero(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_processing_latency(-2.0)
    metrics.observe_processing_latency(3.0)

    total = registry.get_sample_value("cxstream_processing_latency_seconds_sum")
    count = registry.get_sample_value("cxstream_processing_latency_seconds_count")
    assert (total, count) == (3.0, 2.0)


def test_sink_batch_and_error_move_sink_series(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.sink.error("SinkUnavailableError", database_up=False, backoff_seconds=4.0)
    down = (
        registry.get_sample_value("cxstream_sink_database_up"),
        registry.get_sample_value("cxstream_sink_retry_backoff_seconds"),
        registry.get_sample_value("cxstream_sink_errors_total", {"reason": "SinkUnavailableError"}),
    )
    metrics.sink.batch_written({"sessions": 3, "contacts": 5, "sla_events": 0}, 0.2)
    up = (
        registry.get_sample_value("cxstream_sink_database_up"),
        registry.get_sample_value("cxstream_sink_retry_backoff_seconds"),
        registry.get_sample_value("cxstream_sink_batches_total"),
        registry.get_sample_value("cxstream_sink_rows_total", {"table": "contacts"}),
        registry.get_sample_value("cxstream_sink_rows_total", {"table": "sla_events"}),
        registry.get_sample_value("cxstream_sink_batch_seconds_count"),
    )
    assert down == (0.0, 4.0, 1.0)
    assert up == (1.0, 0.0, 1.0, 5.0, None, 1.0)


def test_worker_info_exports_version_config_hash_and_core(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.set_worker_info("0.1.0", "abcdef123456", "compiled")

    value = registry.get_sample_value(
        "cxstream_worker_info",
        {"version": "0.1.0", "config_hash": "abcdef123456", "core": "compiled"},
    )
    assert value == 1.0


def test_every_counter_is_exposed_with_a_total_suffix(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    _touch_every_labelled_metric(metrics)

    exposition = generate_latest(registry).decode()
    counters = re.findall(r"^# TYPE (\S+) counter$", exposition, flags=re.MULTILINE)
    sample_names = set(re.findall(r"^(cxstream_\w+?)(?:\{|\s)", exposition, flags=re.MULTILINE))
    # 22 + cxstream_sla_queue_team_events_total and the three service-level
    # counters answered, answered_late, abandoned (issue 15 part 4), and the four
    # identity counters linked, expired, reattributed, customers_rebuilt (issue 16)
    assert len(counters) == 29
    assert [name for name in counters if not name.endswith("_total")] == []
    assert set(counters) <= sample_names


def test_every_name_is_prefixed_and_durations_are_in_seconds(
    registry: CollectorRegistry,
) -> None:
    Metrics(registry)

    families = list(registry.collect())
    badly_named = [
        f.name
        for f in families
        if not f.name.startswith("cxstream_")
        or re.search(r"_(ms|millis|milliseconds|minutes|hours)$", f.name)
    ]
    assert badly_named == []


def test_no_label_identifies_a_customer_contact_or_session(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    _touch_every_labelled_metric(metrics)

    label_names = {
        label
        for family in registry.collect()
        for sample in family.samples
        for label in sample.labels
    }
    forbidden = [name for name in label_names if re.search(r"customer|contact|session|_id$", name)]
    assert forbidden == []
    assert "channel" in label_names


def _touch_every_labelled_metric(metrics: Metrics) -> None:
    calls: list[Callable[[], None]] = [
        lambda: metrics.observe_event("chat", "contact_started"),
        lambda: metrics.dead_letter("validate", "ValidationError"),
        lambda: metrics.duplicate_event("chat"),
        lambda: metrics.observe_output(late_event()),
        lambda: metrics.observe_output(sla_event()),
        lambda: metrics.observe_output(sla_event(kind="warning")),
        lambda: metrics.observe_output(sla_event(kind="completed")),
        lambda: metrics.observe_output(sla_event(kind="retracted")),
        lambda: metrics.observe_output(contact()),
        lambda: metrics.observe_output(signal()),
        lambda: metrics.observe_output(signal(kind="false_resolution")),
        lambda: metrics.observe_output(signal(kind="bounced")),
        lambda: metrics.apply_output_effect(("need_opened", ("chat",), 1)),
        lambda: metrics.apply_output_effect(("need_closed", ("chat", "false"), 1)),
        lambda: metrics.observe_output(
            contact(first_reply_new=False, bot_only=True, contained=True, contained_new=True)
        ),
        lambda: metrics.observe_output(
            contact(
                first_reply_new=False, settled=True, settled_new=True, service_level="abandoned"
            )
        ),
        lambda: metrics.observe_output(
            contact(settled=True, settled_new=True, service_level="answered_late")
        ),
        lambda: metrics.set_oldest_unanswered("chat", 1.0, 0.1),
        lambda: metrics.set_lag("cx.interactions", 0, 1),
        lambda: metrics.set_stream_time(0, 1.0),
        lambda: metrics.sink.batch_written({"sessions": 1}, 0.1),
        lambda: metrics.sink.error("SinkError", database_up=True, backoff_seconds=1.0),
        lambda: metrics.set_worker_info("0.1.0", "abc", "interpreted"),
        lambda: metrics.identity.observe(
            IdentityMeasures(linked={"chat": 1}, expired={"chat": 1}, delays=[("chat", 1.0)]), 0
        ),
    ]
    for call in calls:
        call()


def test_need_records_and_bounce_signals_move_the_need_counters_by_first_channel():
    from pipeline.core.records import JourneySignal, NeedRecord

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    need = NeedRecord(
        need_id="n1", customer_id="c1", topic="card", status="open", opened_at=0,
        last_contact_at=0, closed_at=None, contacts=1, channels=["chat"], channel_switches=0,
        switch_failures=0, first_contact_resolved=None, resolved=False,
        customer_wait_seconds=0.0, handling_seconds=None, sla_breaches=0, feedback_count=0,
        feedback_average=None, bounced=False, bounced_at=None, first_channel="chat", version=1,
    )  # fmt: skip
    signal = JourneySignal(
        signal_id="n1:bounced", kind="bounced", customer_id="c1", from_contact_id="k1",
        from_channel="chat", from_outcome=None, to_contact_id="k3", to_channel="phone",
        gap_seconds=60.0, topic="card", occurred_at=60_000,
    )  # fmt: skip
    for record in (
        need,
        replace(need, version=2),  # a later open update: not a new need
        signal,
        replace(need, status="final", bounced=True, version=3),
    ):
        metrics.observe_output(record)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("cxstream_needs_opened_total", first_channel="chat") == 1.0
    assert value("cxstream_needs_bounced_total", first_channel="chat") == 1.0
    assert value("cxstream_needs_closed_total", first_channel="chat", bounced="true") == 1.0
    assert (
        value("cxstream_channel_switch_failures_total", from_channel="chat", to_channel="phone")
        is None
    )
