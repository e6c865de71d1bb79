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


# A contact whose events identity split between two customers (its phone number was
# linked to one, then to another during the call): each customer sends a summary of
# it, both version 1, in either order. The one of the later link is kept.
EARLIER_LINK = ("contact", _summary(1, breached=True) | {"identified_at": 1_772_438_500_000})
LATER_LINK = (
    "contact",
    _summary(1, breached=False) | {"customer_id": "cust-2", "identified_at": 1_772_438_600_000},
)


@pytest.mark.parametrize("order", [(EARLIER_LINK, LATER_LINK), (LATER_LINK, EARLIER_LINK)])
def test_of_two_equal_versions_from_two_links_the_later_link_s_summary_is_kept(order, sqlite_store):
    from pipeline.sink.store import dump_tables

    in_batch = rows_by_table(list(order))["contacts"]["m1"]
    sqlite_store.write([order[0]])
    sqlite_store.write([order[1]])
    stored = dump_tables(sqlite_store.url)["contacts"]
    sink = InMemorySink()
    sink.write([order[0]])
    sink.write([order[1]])

    assert in_batch["customer_id"] == "cust-2"
    assert [r["customer_id"] for r in stored] == ["cust-2"]
    assert [r["customer_id"] for r in sink.rows("contacts")] == ["cust-2"]
