"""Contact rows are versioned: a later summary of a contact replaces the stored row,
a redelivered older one does not (in one batch, across batches, in SQLite and in the
in-memory double)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.sink.memory import InMemorySink
from pipeline.sink.rows import rows_by_table
from pipeline.sink.store import SqlStore


def _summary(version: int, *, breached: bool) -> dict[str, Any]:
    return {
        "contact_id": "m1",
        "customer_id": "cust-1",
        "channel": "web_message",
        "session_id": "s1",
        "started_at": 1_772_438_400_000,
        "ended_at": None,
        "outcome": None,
        "topic": None,
        "first_reply_seconds": None,
        "first_reply_business_seconds": None,
        "breached": breached,
        "events": 1,
        "version": version,
        "first_reply_new": False,
    }


NEWER = ("contact", _summary(2, breached=True))
OLDER = ("contact", _summary(1, breached=False))


def test_an_older_contact_version_later_in_a_batch_does_not_replace_the_newer():
    rows = rows_by_table([NEWER, OLDER])["contacts"]
    assert (rows["m1"]["version"], rows["m1"]["breached"]) == (2, True)


def test_an_older_contact_version_redelivered_does_not_replace_the_stored_row_in_memory():
    sink = InMemorySink()
    sink.write([NEWER])
    sink.write([OLDER])
    assert [(r["version"], r["breached"]) for r in sink.rows("contacts")] == [(2, True)]


@pytest.fixture
def sqlite_store(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'cx.db'}")
    store.create_schema()
    yield store
    store.close()


def test_an_older_contact_version_redelivered_does_not_replace_the_stored_row_in_sqlite(
    sqlite_store,
):
    sqlite_store.write([OLDER])
    sqlite_store.write([NEWER])
    sqlite_store.write([OLDER])
    from pipeline.sink.store import dump_tables

    rows = dump_tables(sqlite_store.url)["contacts"]
    assert [(r["version"], r["breached"]) for r in rows] == [(2, True)]
