"""Retraction: a reply dated before a fired deadline takes the breach back (issue 17).

A live worker fires a breach when its wall-clock tick passes the deadline; a
reply stamped before the deadline may still be on its way. When it arrives, the
breach (and a warning it also precedes) is retracted by a ``retracted`` record
under the cancelled record's id, the contact and its journey count one breach
less, and the SQL row of the breach turns into a retracted row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.contract.codec import EventCodec
from pipeline.contract.event import (
    AGENT,
    AGENT_REPLY,
    CONTACT_ENDED,
    CONTACT_STARTED,
    CUSTOMER,
    CUSTOMER_MESSAGE,
    RESOLVED,
    InteractionEvent,
)
from pipeline.core.partitioning import partition_for
from pipeline.core.processor import PartitionProcessor
from pipeline.core.records import (
    ContactSummary,
    OutputRecord,
    SessionRecord,
    SlaEvent,
)
from pipeline.core.retraction import SLA_RETRACTED, cancelled_kind, cancels_breach
from pipeline.errors import ConfigError
from pipeline.replay import replay_events
from pipeline.replay_sql import write_records_to_sql
from pipeline.settings import Settings
from pipeline.settings_loader import build_settings
from pipeline.sink.store import SqlStore, dump_tables
from pipeline.streaming import CONTROL_HEADER, END_OF_INPUT, RawRecord, StreamHandler

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
SECOND = 1000
MINUTE = 60 * SECOND
# chat_first_reply (defaults): 60 s target, warning at 80% (48 s).
WARNING_AT = T0 + 48 * SECOND
DEADLINE = T0 + 60 * SECOND
BREACH_ID = "k1:chat_first_reply:first_reply:0:breach"
WARNING_ID = "k1:chat_first_reply:first_reply:0:warning"
STREAM = build_settings({"worker": {"clock": "stream", "control_records": True}})


def event(
    n: int,
    at: int,
    kind: str,
    actor: str = CUSTOMER,
    *,
    customer: str = "c1",
    contact: str = "k1",
    **fields: Any,
) -> InteractionEvent:
    return InteractionEvent(
        event_id=f"{customer}-e{n}",
        occurred_at=at,
        customer_id=customer,
        channel="chat",
        contact_id=contact,
        type=kind,
        actor=actor,
        **fields,
    )


def opened() -> list[InteractionEvent]:
    return [event(1, T0, CONTACT_STARTED), event(2, T0, CUSTOMER_MESSAGE)]


def reply(at: int) -> InteractionEvent:
    return event(3, at, AGENT_REPLY, AGENT)


def sla_events(
    records: list[OutputRecord], contact: str = "k1"
) -> list[tuple[str, str, int, int | None]]:
    return [
        (r.sla_event_id, r.kind, r.fired_at, r.replied_at)
        for r in records
        if isinstance(r, SlaEvent) and r.contact_id == contact
    ]


def live(settings: Settings = STREAM) -> PartitionProcessor:
    """A processor driven as the live worker drives it: events, and advance() on ticks."""
    processor = PartitionProcessor.from_settings(settings)
    for item in opened():
        processor.process(item)
    return processor


# -- the core ------------------------------------------------------------------------


def test_a_reply_a_millisecond_before_the_deadline_arriving_after_the_breach_retracts_it():
    processor = live()
    fired = processor.advance(DEADLINE + 400)
    late_reply = processor.process(reply(DEADLINE - 1))
    assert sla_events(fired) == [
        (WARNING_ID, "warning", WARNING_AT, None),
        (BREACH_ID, "breach", DEADLINE, None),
    ]
    # The warning stands (the reply came after 80% of the target); the breach goes.
    assert sla_events(late_reply) == [(BREACH_ID, SLA_RETRACTED, DEADLINE + 400, DEADLINE - 1)]
    (retraction,) = [r for r in late_reply if isinstance(r, SlaEvent)]
    assert (retraction.deadline, retraction.overrun_seconds) == (DEADLINE, None)
    assert cancels_breach(retraction) is True
    assert cancelled_kind(retraction) == "breach"


def test_the_retracted_contact_and_its_journey_count_no_breach():
    processor = live()
    processor.advance(DEADLINE + 400)
    out = processor.process(reply(DEADLINE - 1))
    out += processor.process(event(4, T0 + 2 * MINUTE, CONTACT_ENDED, AGENT, outcome=RESOLVED))
    out += processor.end_of_input()
    summaries = [r for r in out if isinstance(r, ContactSummary)]
    (final,) = [r for r in out if isinstance(r, SessionRecord) and r.status == "final"]
    assert [s.breached for s in summaries][-1:] == [False]
    assert final.sla_breaches == 0
    assert processor.stats.sla_retractions == 1


def test_a_reply_at_the_deadline_completes_the_breach_and_retracts_nothing():
    processor = live()
    processor.advance(DEADLINE + 400)
    out = processor.process(reply(DEADLINE))
    assert sla_events(out) == [
        (BREACH_ID.replace("breach", "completed"), "completed", DEADLINE, DEADLINE)
    ]


def test_a_reply_after_the_deadline_completes_the_breach_and_retracts_nothing():
    processor = live()
    processor.advance(DEADLINE + 400)
    out = processor.process(reply(DEADLINE + 300))
    completed = [r for r in out if isinstance(r, SlaEvent)]
    assert [(r.kind, r.replied_at, r.overrun_seconds) for r in completed] == [
        ("completed", DEADLINE + 300, 0.3)
    ]
    assert processor.stats.sla_retractions == 0


def test_a_reply_before_the_warning_time_retracts_the_warning_and_the_breach():
    processor = live()
    processor.advance(DEADLINE + 400)
    out = processor.process(reply(WARNING_AT - 1))
    assert sla_events(out) == [
        (WARNING_ID, SLA_RETRACTED, DEADLINE + 400, WARNING_AT - 1),
        (BREACH_ID, SLA_RETRACTED, DEADLINE + 400, WARNING_AT - 1),
    ]


def test_a_fired_warning_alone_is_retracted_by_a_reply_dated_before_it():
    processor = live()
    processor.advance(WARNING_AT + 200)
    out = processor.process(reply(WARNING_AT - 5))
    assert sla_events(out) == [(WARNING_ID, SLA_RETRACTED, WARNING_AT + 200, WARNING_AT - 5)]


def test_a_reply_arriving_after_the_retraction_window_leaves_the_breach_and_completes_it():
    window = build_settings({"worker": {"clock": "stream"}, "sla": {"retraction_window": "2m"}})
    processor = live(window)
    processor.advance(DEADLINE + 2 * MINUTE + 1)
    out = processor.process(reply(DEADLINE - 1))
    assert sla_events(out) == [
        (BREACH_ID.replace("breach", "completed"), "completed", DEADLINE - 1, DEADLINE - 1)
    ]
    assert processor.stats.sla_retractions == 0


def test_a_reply_arriving_exactly_the_retraction_window_after_the_deadline_still_retracts():
    window = build_settings({"worker": {"clock": "stream"}, "sla": {"retraction_window": "2m"}})
    processor = live(window)
    processor.advance(DEADLINE + 2 * MINUTE)
    out = processor.process(reply(DEADLINE - 1))
    assert [kind for _, kind, _, _ in sla_events(out)] == [SLA_RETRACTED]


def test_a_zero_retraction_window_turns_retraction_off():
    off = build_settings({"worker": {"clock": "stream"}, "sla": {"retraction_window": "0s"}})
    processor = live(off)
    processor.advance(DEADLINE + 400)
    out = processor.process(reply(DEADLINE - 1))
    assert [kind for _, kind, _, _ in sla_events(out)] == ["completed"]


def test_a_breach_whose_reply_arrives_in_a_later_batch_of_the_stream_is_retracted_too():
    """Stream time alone can pass a deadline before an earlier-dated reply arrives."""
    processor = PartitionProcessor.from_settings(STREAM)
    for item in opened():
        processor.process(item)
    passing = processor.process(
        event(1, DEADLINE + 5 * SECOND, CONTACT_STARTED, customer="c2", contact="k2")
    )
    out = processor.process(reply(DEADLINE - 10))
    assert [kind for _, kind, _, _ in sla_events(passing)] == ["warning", "breach"]
    assert sla_events(out) == [(BREACH_ID, SLA_RETRACTED, DEADLINE + 5 * SECOND, DEADLINE - 10)]


# -- the replay and the worker -------------------------------------------------------


def _same_partition_customer(customer: str, partitions: int) -> str:
    want = partition_for(customer, partitions)
    return next(
        c for c in (f"other-{i}" for i in range(10_000)) if partition_for(c, partitions) == want
    )


def _stream_of_a_late_reply(partitions: int) -> list[InteractionEvent]:
    """c1 waits; another customer of its partition passes the deadline; c1's reply
    (dated a millisecond before the deadline) arrives after that."""
    other = _same_partition_customer("c1", partitions)
    return [
        *opened(),
        event(1, DEADLINE + 5 * SECOND, CONTACT_STARTED, customer=other, contact="k2"),
        reply(DEADLINE - 1),
        event(2, DEADLINE + 6 * SECOND, CUSTOMER_MESSAGE, customer=other, contact="k2"),
        event(4, T0 + 2 * MINUTE, CONTACT_ENDED, AGENT, outcome=RESOLVED),
    ]


def _worker_records(
    settings: Settings, events: list[InteractionEvent], tick: tuple[int, int] | None = None
) -> list[OutputRecord]:
    """The records a worker's stream handler sends for ``events``, one batch per event,
    then an end-of-input record. The wall clock reads the latest event time, and with
    ``tick`` = (n, wall ms) the clock reads that time and ticks after event n."""
    codec = EventCodec()
    wall = [events[0].occurred_at]
    handler = StreamHandler(settings, wall_clock_ms=lambda: wall[0])
    records: list[OutputRecord] = []
    partitions = settings.kafka.input_partitions
    used = sorted({partition_for(e.customer_id, partitions) for e in events})

    def raw(partition: int, offset: int, value: bytes | None, **extra: Any) -> RawRecord:
        return RawRecord(
            topic=settings.kafka.topic("interactions"),
            partition=partition,
            offset=offset,
            value=value,
            timestamp_ms=T0,
            **{"key": None, "headers": (), **extra},
        )

    for offset, item in enumerate(events):
        partition = partition_for(item.customer_id, partitions)
        wall[0] = max(wall[0], item.occurred_at)
        handler.handle(raw(partition, offset, codec.encode(item), key=item.customer_id.encode()))
        if tick is not None and offset == tick[0]:
            wall[0] = tick[1]
            handler.tick([partition])
        records.extend(handler.drain(force_updates=True).records)
    for partition in used:
        handler.handle(raw(partition, len(events), None, headers=[(CONTROL_HEADER, END_OF_INPUT)]))
    records.extend(handler.drain(force_updates=True).records)
    return records


def _tables(records: list[OutputRecord], settings: Settings, db: Path) -> dict[str, Any]:
    """The SQL tables of ``records``, without the rows' ``version``: a worker sends
    open-journey updates as its wall-clock throttle allows (``session_update_seconds``),
    a replay once, so they count versions differently (as in the integration test
    tests/integration/test_stream_matches_replay.py)."""
    url = f"sqlite:///{db}"
    write_records_to_sql(records, build_settings({**settings.source, "sql": {"url": url}}))
    return {
        name: [{k: v for k, v in row.items() if k != "version"} for row in rows]
        for name, rows in dump_tables(url).items()
    }


def test_the_replay_and_a_stream_clock_worker_write_the_same_tables_with_a_retraction(
    tmp_path: Path,
):
    events = _stream_of_a_late_reply(STREAM.kafka.input_partitions)
    replayed = replay_events(events, STREAM, workers=1).records
    worker = _worker_records(STREAM, events)
    assert [kind for _, kind, _, _ in sla_events(replayed)] == ["warning", "breach", "retracted"]
    assert _tables(worker, STREAM, tmp_path / "worker.db") == _tables(
        replayed, STREAM, tmp_path / "replay.db"
    )


def test_a_live_worker_whose_tick_fired_the_breach_ends_with_the_replays_breach_counts(
    tmp_path: Path,
):
    """The replay never fires the breach (no event passes the deadline before the
    reply); the live worker's tick does, then retracts it: the contacts, the journeys
    and the breach rows agree, and only the live tables hold the retracted row."""
    live_settings = build_settings(
        {"worker": {"clock": "live", "allowed_skew_seconds": 0, "control_records": True}}
    )
    events = [*opened(), reply(DEADLINE - 1), event(4, T0 + 2 * MINUTE, CONTACT_ENDED, AGENT,
                                                    outcome=RESOLVED)]  # fmt: skip
    replayed = replay_events(events, STREAM, workers=1).records
    # The tick after the customer message reads the wall clock at the deadline + 0.4 s.
    worker = _worker_records(live_settings, events, tick=(1, DEADLINE + 400))
    # The reply came after 80% of the target: the warning stands in both.
    assert [kind for _, kind, _, _ in sla_events(replayed)] == ["warning"]
    assert [kind for _, kind, _, _ in sla_events(worker)] == ["warning", "breach", "retracted"]
    live_tables = _tables(worker, live_settings, tmp_path / "live.db")
    replay_tables = _tables(replayed, STREAM, tmp_path / "replay.db")

    def counts(tables: dict[str, Any]) -> Any:
        return (
            [(c["contact_id"], c["breached"]) for c in tables["contacts"]],
            [(s["session_id"], s["status"], s["sla_breaches"]) for s in tables["sessions"]],
            [e["sla_event_id"] for e in tables["sla_events"] if e["kind"] == "breach"],
        )

    assert counts(live_tables) == counts(replay_tables)
    assert [(e["sla_event_id"], e["kind"]) for e in live_tables["sla_events"]] == [
        (BREACH_ID, SLA_RETRACTED),
        (WARNING_ID, "warning"),
    ]


# -- settings ------------------------------------------------------------------------


def test_by_default_breaches_fire_on_time_and_can_be_retracted_for_ten_minutes():
    defaults = build_settings()
    assert (
        defaults.worker.allowed_skew_seconds,
        defaults.worker.tick_seconds,
        defaults.core.retraction_window_seconds,
    ) == (0.0, 0.5, 600.0)


def test_a_negative_retraction_window_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"sla\.retraction_window must not be negative"):
        build_settings({"sla": {"retraction_window": -1}})


def test_a_misspelled_sla_setting_is_refused_by_name():
    with pytest.raises(ConfigError, match="retraction_windw"):
        build_settings({"sla": {"retraction_windw": "5m"}})


# -- the SQL sink --------------------------------------------------------------------


def _sla_rows(processor_out: list[OutputRecord]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r.OUTPUT_NAME, r.to_dict())
        for r in processor_out
        if isinstance(r, SlaEvent) and r.contact_id == "k1"
    ]


def _breach_stats(url: str) -> list[tuple[str, str, int, int]]:
    return [
        (row["bucket_size"], row["channel"], row["sla_warnings"], row["sla_breaches"])
        for row in dump_tables(url)["channel_stats"]
    ]


@pytest.mark.parametrize("batches", ["one batch", "two batches"])
def test_the_store_turns_a_retracted_breach_row_into_a_retracted_row_counted_nowhere(
    tmp_path: Path, batches: str
):
    processor = live()
    fired = _sla_rows(processor.advance(DEADLINE + 400))
    retracted = _sla_rows(processor.process(reply(WARNING_AT - 1)))
    store = SqlStore(f"sqlite:///{tmp_path / 'sink.db'}")
    store.create_schema()
    if batches == "one batch":
        store.write(fired + retracted)
    else:
        store.write(fired)
        # The warning (08:00:48) and the breach (08:01:00) fall in two minutes.
        assert _breach_stats(store.url) == [
            ("hour", "chat", 1, 1),
            ("minute", "chat", 1, 0),
            ("minute", "chat", 0, 1),
        ]
        store.write(retracted)
    rows = dump_tables(store.url)["sla_events"]
    assert [(r["sla_event_id"], r["kind"], r["replied_at"] is not None) for r in rows] == [
        (BREACH_ID, SLA_RETRACTED, True),
        (WARNING_ID, SLA_RETRACTED, True),
    ]
    # Minute rows whose counters all fell to zero are deleted (pipeline/sink/stats.py).
    assert _breach_stats(store.url) == []
    store.close()


# -- metrics -------------------------------------------------------------------------


def test_a_retraction_counts_in_its_own_series_by_the_kind_it_takes_back():
    from prometheus_client import CollectorRegistry

    from pipeline.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    processor = live()
    for record in processor.advance(DEADLINE + 400) + processor.process(reply(WARNING_AT - 1)):
        metrics.observe_output(record)
    labels = {"channel": "chat", "policy": "chat_first_reply"}

    def sample(name: str, **extra: str) -> float | None:
        return registry.get_sample_value(name, {**labels, **extra})

    # The breach and warning counters stay gross; the retractions stand beside them.
    assert (
        sample("cxstream_sla_warnings_total"),
        sample("cxstream_sla_breaches_total"),
        sample("cxstream_sla_retractions_total", kind="warning"),
        sample("cxstream_sla_retractions_total", kind="breach"),
        sample("cxstream_sla_completed_total"),
    ) == (1.0, 1.0, 1.0, 1.0, None)


def test_the_ops_page_shows_warnings_and_breaches_net_of_their_retractions():
    from prometheus_client import CollectorRegistry

    from pipeline.metrics import Metrics
    from pipeline.ops_status import ChannelView, build_status, flatten

    metrics = Metrics(CollectorRegistry())
    processor = live()
    for record in processor.advance(DEADLINE + 400) + processor.process(reply(DEADLINE - 1)):
        metrics.observe_output(record)
    status = build_status(
        flatten(metrics.registry.collect()),
        [ChannelView("chat", "Chat", 0.8)],
        switch_failures_last_hour={},
        generated_at=1.0,
        started_at=0.0,
    )
    (card,) = status["channels"]
    # The breach was retracted, the warning (the reply came after it) stands.
    assert (card["sla_breaches"], card["sla_warnings"]) == (0.0, 1.0)
