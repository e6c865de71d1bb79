"""The pure parts of ``cxstream bench peers``: its lines, its ratios, its flush events."""

from __future__ import annotations

import struct

import pytest

from pipeline.contract.event import InteractionEvent
from pipeline.contract.validate import validate
from pipeline.core.partitioning import partition_for
from pipeline.settings_loader import build_settings
from pipeline.tools.bench_peers import (
    CXSTREAM,
    FLUSH_MARGIN_MS,
    KSTREAMS_ALOS,
    KSTREAMS_EOS,
    EngineResult,
    cxstream_final_bounds,
    flush_customer,
    flush_events,
    flush_time_ms,
    kstreams_bounds,
    parse_engine_line,
    parse_report,
    ratio_line,
    ratios,
)

MINUTE = 60_000


def _event(occurred_at: int, customer: str = "c-1") -> InteractionEvent:
    return InteractionEvent(
        event_id=f"e-{occurred_at}",
        occurred_at=occurred_at,
        customer_id=customer,
        channel="chat",
        contact_id="k-1",
        type="contact_started",
        actor="customer",
        producer="test",
    )


def test_an_engine_line_carries_rate_and_cpu_per_event_and_parses_back() -> None:
    result = EngineResult(CXSTREAM, events=100_006, seconds=12.5, cpu_s=25.0, sessions_out=10_858)

    line = result.line()

    assert line == (
        "engine=cxstream events_per_s=8000 cpu_us_per_event=250 sessions_out=10858 "
        "events=100006 seconds=12.500 cpu_s=25.000"
    )
    assert parse_engine_line(line) == result


def test_an_engine_line_after_a_log_prefix_parses_and_unknown_fields_are_ignored() -> None:
    line = (
        "12:00 engine=kstreams_eos events_per_s=1 cpu_us_per_event=2 sessions_out=3 "
        "events=10 seconds=2.000 cpu_s=1.000 load=0.5"
    )

    assert parse_engine_line(line) == EngineResult(
        KSTREAMS_EOS, events=10, seconds=2.0, cpu_s=1.0, sessions_out=3
    )


def test_a_line_without_an_engine_field_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="no engine"):
        parse_engine_line("events=10 seconds=1 cpu_s=1 sessions_out=1")


def test_the_report_is_the_last_json_line_even_behind_a_log_prefix() -> None:
    output = (
        "[main] WARN something\n"
        '[2026-12-05 12:00:00] {"events": 5, "seconds": 1.0, "cpu_s": 0.5}\n'
        "closing\n"
    )

    assert parse_report(output) == {"events": 5, "seconds": 1.0, "cpu_s": 0.5}


def test_output_without_a_report_is_an_error() -> None:
    with pytest.raises(ValueError, match="no JSON report"):
        parse_report("Exception in thread main\n")


def test_ratios_are_cxstream_events_per_second_over_each_kafka_streams_run() -> None:
    results = {
        CXSTREAM: EngineResult(CXSTREAM, 100_000, 20.0, 30.0, 1),  # 5,000/s
        KSTREAMS_EOS: EngineResult(KSTREAMS_EOS, 100_000, 10.0, 12.0, 1),  # 10,000/s
        KSTREAMS_ALOS: EngineResult(KSTREAMS_ALOS, 100_000, 8.0, 11.0, 1),  # 12,500/s
    }

    assert ratios(results) == {"ratio_vs_kstreams_eos": 0.5, "ratio_vs_kstreams_alos": 0.4}
    assert ratio_line(results) == "ratio_vs_kstreams_eos=0.50 ratio_vs_kstreams_alos=0.40"


def test_a_kafka_streams_run_that_did_not_happen_has_no_ratio() -> None:
    results = {
        CXSTREAM: EngineResult(CXSTREAM, 100, 1.0, 1.0, 1),
        KSTREAMS_EOS: EngineResult(KSTREAMS_EOS, 100, 2.0, 1.0, 1),
    }

    assert ratios(results) == {"ratio_vs_kstreams_eos": 2.0}


def test_the_flush_time_is_past_every_close_including_a_held_journey() -> None:
    events = [_event(1_000), _event(90 * MINUTE), _event(5_000)]

    at = flush_time_ms(events, gap_ms=30 * MINUTE, grace_ms=5 * MINUTE, hold_ms=240 * MINUTE)

    assert at == 90 * MINUTE + 240 * MINUTE + 30 * MINUTE + 5 * MINUTE + FLUSH_MARGIN_MS


def test_without_a_hold_the_flush_time_is_the_last_event_plus_gap_grace_and_margin() -> None:
    at = flush_time_ms([_event(10 * MINUTE)], gap_ms=30 * MINUTE, grace_ms=5 * MINUTE)

    assert at == 45 * MINUTE + FLUSH_MARGIN_MS


def test_each_flush_customer_is_routed_by_kafka_to_its_own_partition() -> None:
    customers = [flush_customer(partition, 6) for partition in range(6)]

    assert [partition_for(customer, 6) for customer in customers] == [0, 1, 2, 3, 4, 5]
    assert customers == [flush_customer(partition, 6) for partition in range(6)]  # stable


def test_flush_events_are_one_valid_event_per_partition_at_the_flush_time() -> None:
    settings = build_settings({})

    at = 1_772_448_332_628  # 2026-03-02, as a 100,000-event run computes it

    events = flush_events(at, 6)

    assert [partition_for(e.customer_id, 6) for e in events] == [0, 1, 2, 3, 4, 5]
    assert {e.occurred_at for e in events} == {at}
    assert len({e.event_id for e in events}) == 6
    for event in events:
        assert validate(event, settings.channels) == event


def test_kafka_streams_output_records_give_customer_start_and_end() -> None:
    path = b"chat,phone"
    value = struct.pack(">qqiiI", 1_000, 9_000, 7, 2, len(path)) + path

    assert kstreams_bounds(b"c-000042", value) == ("c-000042", 1_000, 9_000)


def test_cxstream_sessions_count_once_per_final_and_never_open_or_superseded() -> None:
    def record(session_id: str, status: str, start: int = 1, end: int = 2) -> dict[str, object]:
        return {
            "session_id": session_id,
            "status": status,
            "customer_id": "c-1",
            "started_at": start,
            "ended_at": end,
        }

    records = [
        record("s1", "open"),
        record("s1", "final", 1, 5),
        record("s1", "final", 1, 5),  # a correction after a late breach
        record("s2", "open"),
        record("s3", "superseded"),
        record("s4", "final", 7, 8),
    ]

    assert cxstream_final_bounds(records) == {"s1": ("c-1", 1, 5), "s4": ("c-1", 7, 8)}


def test_exactly_once_is_also_compared_with_exactly_once() -> None:
    results = {
        name: EngineResult(name, events=1000, seconds=seconds, cpu_s=0.1, sessions_out=1)
        for name, seconds in (("cxstream", 1.0), ("cxstream_eos", 2.0), ("kstreams_eos", 1.6))
    }

    assert ratios(results) == {"ratio_vs_kstreams_eos": 1.6, "ratio_eos_vs_kstreams_eos": 0.8}
