"""A retraction in PostgreSQL: the breach row turns retracted and channel_stats follows,
exactly as in SQLite (the COPY + upsert path of pipeline/sink/bulk.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.sink.store import SqlStore, dump_tables
from tests.unit.test_retraction import (
    BREACH_ID,
    DEADLINE,
    WARNING_AT,
    WARNING_ID,
    _sla_rows,
    live,
    reply,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_a_retracted_breach_in_a_later_batch_leaves_postgres_equal_to_sqlite(
    pg_database_url: str, tmp_path: Path
) -> None:
    processor = live()
    fired = _sla_rows(processor.advance(DEADLINE + 400))
    retracted = _sla_rows(processor.process(reply(WARNING_AT - 1)))
    sqlite_url = f"sqlite:///{tmp_path / 'same.db'}"
    for url in (pg_database_url, sqlite_url):
        store = SqlStore(url)
        store.create_schema()
        store.write(fired)
        store.write(retracted)
        store.dispose()
    tables = dump_tables(pg_database_url)
    assert [(r["sla_event_id"], r["kind"]) for r in tables["sla_events"]] == [
        (BREACH_ID, "retracted"),
        (WARNING_ID, "retracted"),
    ]
    assert tables["channel_stats"] == [], tables["channel_stats"]
    assert tables == dump_tables(sqlite_url)
