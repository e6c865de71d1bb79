"""SqlStore against a real PostgreSQL: the same tables as SQLite, idempotent, outage-safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import SinkUnavailableError
from pipeline.sink.store import SqlStore, dump_tables
from tests.unit.test_sink_store import T0, sample_batch, session

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
