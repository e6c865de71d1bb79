"""channel_stats derivation: which buckets a row touches, and exactness across batches."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipeline.sink.bench import generate_records
from pipeline.sink.stats import buckets_of, table_columns
from pipeline.sink.store import SqlStore, dump_tables
from tests.unit.test_sink_store import session

T0 = datetime(2026, 3, 2, 8, 0, 30, tzinfo=UTC)
T0_MINUTE_MS = 1_772_438_400_000


def test_an_ended_contact_touches_its_start_and_end_minutes() -> None:
    row = {"channel": "chat", "started_at": T0, "ended_at": T0.replace(minute=3)}
    assert buckets_of("contacts", [row]) == {
        ("contacts_started", "chat", T0_MINUTE_MS),
        ("contacts_ended", "chat", T0_MINUTE_MS + 3 * 60_000),
    }


def test_an_open_session_touches_no_bucket_and_a_final_one_its_first_channel() -> None:
    open_row = {"status": "open", "first_channel": "chat", "started_at": T0}
    final_row = {"status": "final", "first_channel": "phone", "started_at": T0}
    assert buckets_of("sessions", [open_row]) == set()
    assert buckets_of("sessions", [final_row]) == {("final_sessions", "phone", T0_MINUTE_MS)}


def test_naive_sqlite_datetimes_count_as_utc() -> None:
    row = {"channel": "chat", "fired_at": T0.replace(tzinfo=None), "kind": "breach"}
    assert buckets_of("sla_events", [row]) == {("sla_fired", "chat", T0_MINUTE_MS)}


def test_a_completed_sla_event_touches_no_bucket() -> None:
    row = {"channel": "chat", "fired_at": T0, "kind": "completed"}
    assert buckets_of("sla_events", [row]) == set()


def test_a_switch_failure_touches_both_channels() -> None:
    row = {"from_channel": "chat", "to_channel": "phone", "occurred_at": T0}
    assert buckets_of("channel_switch_failures", [row]) == {
        ("switch_out", "chat", T0_MINUTE_MS),
        ("switch_in", "phone", T0_MINUTE_MS),
    }


def test_stored_row_columns_cover_what_placing_a_row_reads() -> None:
    assert table_columns("contacts") == ("channel", "started_at", "ended_at")
    assert table_columns("sessions") == ("first_channel", "started_at", "status")


def test_small_batches_and_one_big_batch_give_identical_tables(tmp_path: Path) -> None:
    """Per-source recomputation in small batches (sessions turning final, rows
    leaving buckets) ends where a single derivation of everything ends."""
    records = generate_records(1500)
    small, big = f"sqlite:///{tmp_path}/small.db", f"sqlite:///{tmp_path}/big.db"
    for url, size in ((small, 70), (big, len(records))):
        store = SqlStore(url)
        store.create_schema()
        for start in range(0, len(records), size):
            store.write(records[start : start + size])
        store.dispose()
    small_dump = dump_tables(small)
    assert small_dump == dump_tables(big)
    assert len(small_dump["channel_stats"]) > 100


def test_redelivering_every_batch_changes_no_table(tmp_path: Path) -> None:
    records = generate_records(600)
    url = f"sqlite:///{tmp_path}/again.db"
    store = SqlStore(url)
    store.create_schema()
    batches = [records[start : start + 100] for start in range(0, len(records), 100)]
    for batch in batches:
        store.write(batch)
    first = dump_tables(url)
    for batch in batches:
        store.write(batch)
    store.dispose()
    assert dump_tables(url) == first


def test_a_final_session_later_superseded_leaves_no_stats_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/superseded.db"
    store = SqlStore(url)
    store.create_schema()
    store.write([session("final", version=1)])
    store.write([session("superseded", version=2, superseded_by="s0")])
    store.dispose()
    assert dump_tables(url)["channel_stats"] == []
