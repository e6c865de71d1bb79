"""SqlStore against a real PostgreSQL: the same tables as SQLite, idempotent, outage-safe."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pipeline.errors import SinkRejectedError, SinkUnavailableError
from pipeline.sink.bench import generate_records
from pipeline.sink.isolate import write_isolating
from pipeline.sink.store import SqlStore, dump_tables
from tests.unit.test_sink_store import T0, contact, sample_batch, session

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_writing_a_batch_twice_leaves_postgres_identical(pg_database_url: str) -> None:
    store = SqlStore(pg_database_url)
    store.create_schema()
    store.write(sample_batch())
    first = dump_tables(pg_database_url)
    store.write(sample_batch())
    store.dispose()
    assert dump_tables(pg_database_url) == first
    assert len(first["channel_stats"]) == 8


def test_postgres_and_sqlite_hold_identical_tables(pg_database_url: str, tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path}/same.db"
    batches = [sample_batch(), [session("open", version=5)], [session("final", version=2)]]
    for url in (pg_database_url, sqlite_url):
        store = SqlStore(url)
        store.create_schema()
        for batch in batches:
            store.write(batch)
        store.dispose()
    assert dump_tables(pg_database_url) == dump_tables(sqlite_url)


def test_open_session_after_final_does_not_overwrite_it_on_postgres(pg_database_url: str) -> None:
    store = SqlStore(pg_database_url)
    store.create_schema()
    store.write([session("final", version=3)])
    store.write([session("open", version=9, started_at=T0 + 1)])
    store.dispose()
    [row] = dump_tables(pg_database_url)["sessions"]
    assert (row["status"], row["version"]) == ("final", 3)


@pytest.mark.parametrize("field", ["contact_id", "topic"])
def test_nul_character_in_text_is_rejected_not_unavailable_on_postgres(
    pg_database_url: str, field: str
) -> None:
    """PostgreSQL text cannot hold NUL: 'invalid byte sequence for encoding "UTF8": 0x00'."""
    store = SqlStore(pg_database_url)
    store.create_schema()
    name, record = contact("c1", "chat", T0, "resolved", 5.0)
    with pytest.raises(SinkRejectedError, match="0x00"):
        store.write([(name, {**record, field: "c\x00" + record[field]})])
    store.dispose()
    assert dump_tables(pg_database_url)["contacts"] == []


def test_bisecting_stores_every_record_but_the_refused_ones_on_postgres(
    pg_database_url: str, tmp_path: Path
) -> None:
    """The tables then equal those of a database given only the good records."""
    batch = [contact(f"c{i:02}", "chat", T0 + i * 60_000, "resolved", 5.0) for i in range(12)]
    name, record = batch[2]
    batch[2] = (name, {**record, "topic": "lo\x00an"})
    name, record = batch[9]
    batch[9] = (name, {**record, "events": 2**40})  # out of an INTEGER's range
    store = SqlStore(pg_database_url)
    store.create_schema()
    outcome = write_isolating(store, batch)
    store.dispose()

    assert [rejected.index for rejected in outcome.rejected] == [2, 9]
    assert ["0x00" in str(rejected.error) for rejected in outcome.rejected] == [True, False]
    assert "out of range" in str(outcome.rejected[1].error)
    sqlite_url = f"sqlite:///{tmp_path}/good.db"
    _write_batches(sqlite_url, [[item for i, item in enumerate(batch) if i not in (2, 9)]])
    assert dump_tables(pg_database_url) == dump_tables(sqlite_url)
    assert len(dump_tables(pg_database_url)["contacts"]) == 10


def test_write_during_outage_is_unavailable_and_succeeds_after_restart(
    postgres_server, pg_database_url: str
) -> None:
    if postgres_server.data_dir is None:
        pytest.skip("CXSTREAM_TEST_POSTGRES_URL is an external server; it cannot be stopped")
    store = SqlStore(pg_database_url)
    store.create_schema()
    store.write([session("open", version=1)])
    postgres_server.stop()
    try:
        with pytest.raises(SinkUnavailableError):
            store.write([session("final", version=2)])
    finally:
        postgres_server.start()
    store.write([session("final", version=2)])
    store.dispose()
    [row] = dump_tables(pg_database_url)["sessions"]
    assert (row["status"], row["version"]) == ("final", 2)


def _write_batches(url: str, batches: list[list], times: int = 1) -> None:
    store = SqlStore(url)
    store.create_schema()
    for _ in range(times):
        for batch in batches:
            store.write(batch)
    store.dispose()


def _generated_batches(rows: int, size: int) -> list[list]:
    records = generate_records(rows)
    return [records[start : start + size] for start in range(0, len(records), size)]


def test_redelivered_copy_batches_leave_postgres_identical(pg_database_url: str) -> None:
    batches = _generated_batches(2000, 250)
    _write_batches(pg_database_url, batches)
    first = dump_tables(pg_database_url)
    _write_batches(pg_database_url, batches)
    assert dump_tables(pg_database_url) == first
    assert len(first["contacts"]) > 500
    assert len(first["channel_stats"]) > 100


def test_generated_batches_give_identical_tables_on_postgres_and_sqlite(
    pg_database_url: str, tmp_path: Path
) -> None:
    batches = _generated_batches(2000, 250)
    sqlite_url = f"sqlite:///{tmp_path}/generated.db"
    for url in (pg_database_url, sqlite_url):
        _write_batches(url, batches)
    assert dump_tables(pg_database_url) == dump_tables(sqlite_url)


def test_session_precedence_holds_across_batches_on_postgres(pg_database_url: str) -> None:
    steps = [
        ([session("open", version=1, contacts=1)], ("open", 1, 1)),
        ([session("open", version=2, contacts=2)], ("open", 2, 2)),
        ([session("open", version=1, contacts=1)], ("open", 2, 2)),
        ([session("final", version=1, contacts=3)], ("final", 1, 3)),
        ([session("open", version=7, contacts=4)], ("final", 1, 3)),
        ([session("superseded", version=1, superseded_by="s0")], ("superseded", 1, 2)),
        ([session("final", version=1, contacts=5)], ("superseded", 1, 2)),
        ([session("final", version=2, contacts=6)], ("final", 2, 6)),
    ]
    store = SqlStore(pg_database_url)
    store.create_schema()
    seen = []
    for batch, _ in steps:
        store.write(batch)
        [row] = dump_tables(pg_database_url)["sessions"]
        seen.append((row["status"], row["version"], row["contacts"]))
    store.dispose()
    assert seen == [expected for _, expected in steps]


def test_rows_that_moved_buckets_give_identical_stats_on_postgres_and_sqlite(
    pg_database_url: str, tmp_path: Path
) -> None:
    """PostgreSQL finds the old bucket positions in SQL (the upsert's CTE); they
    must empty the old buckets exactly as SQLite's Python lookup does."""
    batches = [
        sample_batch(),
        [session("final", version=2, started_at=T0 - 2 * 3_600_000)],
        [contact("c1", "phone", T0 + 90 * 60_000, "resolved", 10.0)],
        [session("open", version=9, started_at=T0 + 1)],
    ]
    sqlite_url = f"sqlite:///{tmp_path}/moved.db"
    for url in (pg_database_url, sqlite_url):
        _write_batches(url, batches)
    stats = dump_tables(pg_database_url)["channel_stats"]
    assert stats == dump_tables(sqlite_url)["channel_stats"]
    assert [
        (row["bucket_start"][11:16], row["channel"], row["fcr_denominator"])
        for row in stats
        if row["bucket_size"] == "hour" and row["fcr_denominator"]
    ] == [("06:00", "chat", 1)]
    assert [
        (row["bucket_start"][11:16], row["contacts_started"])
        for row in stats
        if row["bucket_size"] == "minute" and row["channel"] == "chat" and row["contacts_started"]
    ] == []


def test_out_of_range_integer_is_rejected_not_truncated_on_postgres(pg_database_url: str) -> None:
    """Binary COPY would silently keep the low 4 bytes of an INTEGER; staging as
    BIGINT lets the upsert refuse the value instead."""
    store = SqlStore(pg_database_url)
    store.create_schema()
    name, record = contact("c1", "chat", T0, "resolved", 5.0)
    with pytest.raises(SinkRejectedError, match="out of range"):
        store.write([(name, {**record, "events": 2**40})])
    store.dispose()
    assert dump_tables(pg_database_url)["contacts"] == []


def test_field_of_the_wrong_type_is_rejected_on_postgres(pg_database_url: str) -> None:
    store = SqlStore(pg_database_url)
    store.create_schema()
    name, record = contact("c1", "chat", T0, "resolved", 5.0)
    with pytest.raises(SinkRejectedError, match="contacts row cannot be stored"):
        store.write([(name, {**record, "events": "5"})])
    store.write([(name, record)])
    store.dispose()
    assert [row["events"] for row in dump_tables(pg_database_url)["contacts"]] == [5]


def _row_versions(url: str) -> dict[str, list[str]]:
    """Per base table the transaction ids (xmin) of its row versions, by key."""
    keys = {"sessions": "session_id", "contacts": "contact_id", "sla_events": "sla_event_id"}
    engine = create_engine(url)
    with engine.connect() as conn:
        versions = {
            table: [
                str(xmin)
                for (xmin,) in conn.execute(text(f"SELECT xmin FROM {table} ORDER BY {key}"))
            ]
            for table, key in keys.items()
        }
    engine.dispose()
    return versions


def test_redelivered_batch_rewrites_no_row_on_postgres(pg_database_url: str) -> None:
    """Equal rows are left alone (no new row versions), changed ones are written."""
    store = SqlStore(pg_database_url)
    store.create_schema()
    store.write(sample_batch())
    first = _row_versions(pg_database_url)
    store.write(sample_batch())
    redelivered = _row_versions(pg_database_url)
    store.write([session("final", version=2)])
    store.dispose()
    assert redelivered == first
    assert _row_versions(pg_database_url)["sessions"] != first["sessions"]
