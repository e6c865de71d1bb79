"""Of two customers' SLA records under one sla_event_id, the sink keeps the later
link's (issue 16).

Identity moved a contact from one customer to another; both send its SLA records
under the same ids, and the old customer's clock may fire after the new one sent
its records (it has not yet learnt of the move), so they arrive in either order.
The row keeps the record with the later ``identified_at`` (NULL earliest); a
record of the same customer always replaces (a retraction, a completion).
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.sink.memory import InMemorySink
from pipeline.sink.rows import rows_by_table
from pipeline.sink.store import SqlStore, dump_tables

T0 = 1_772_438_400_000


def _sla(customer: str, kind: str, identified_at: int | None) -> tuple[str, dict[str, Any]]:
    return (
        "sla_event",
        {
            "sla_event_id": "call-1:phone_queue_answer:first_reply:0:warning",
            "kind": kind,
            "customer_id": customer,
            "contact_id": "call-1",
            "channel": "phone",
            "policy": "phone_queue_answer",
            "metric": "first_reply",
            "clock_started_at": T0,
            "deadline": T0 + 180_000,
            "target_seconds": 180.0,
            "calendar": "24x7",
            "fired_at": T0 + 144_000,
            "identified_at": identified_at,
        },
    )


OLD_OWNER = _sla("cust-A", "warning", T0 + 60_000)  # a wrong link at +1 min
NEW_OWNER = _sla("cust-B", "warning", T0 + 120_000)  # the right one at +2 min
ANONYMOUS = _sla("anon:phone:00", "warning", None)


@pytest.fixture
def sqlite_store(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'cx.db'}")
    store.create_schema()
    yield store
    store.close()


def _kept(order: list, sqlite_store: SqlStore) -> list[str]:
    """The customer of the row, in one batch, across batches in SQLite, and in the
    in-memory double; asserts the three agree."""
    in_batch = rows_by_table(order)["sla_events"]
    for record in order:
        sqlite_store.write([record])
    stored = dump_tables(sqlite_store.url)["sla_events"]
    sink = InMemorySink()
    for record in order:
        sink.write([record])
    customers = [r["customer_id"] for r in in_batch.values()]
    assert customers == [r["customer_id"] for r in stored]
    assert customers == [r["customer_id"] for r in sink.rows("sla_events")]
    return customers


@pytest.mark.parametrize("order", [[OLD_OWNER, NEW_OWNER], [NEW_OWNER, OLD_OWNER]])
def test_the_later_link_s_record_is_kept_whatever_order_they_arrive_in(order, sqlite_store):
    assert _kept(order, sqlite_store) == ["cust-B"]


@pytest.mark.parametrize("order", [[ANONYMOUS, NEW_OWNER], [NEW_OWNER, ANONYMOUS]])
def test_an_identified_customer_s_record_beats_the_anonymous_customer_s(order, sqlite_store):
    assert _kept(order, sqlite_store) == ["cust-B"]


def test_a_record_of_the_same_customer_always_replaces(sqlite_store):
    # The contact's identified_at moved earlier (an earlier link of the same
    # customer), then its warning was retracted: the retraction stands.
    retracted = _sla("cust-B", "retracted", T0 + 30_000)
    sqlite_store.write([NEW_OWNER])
    sqlite_store.write([retracted])
    rows = dump_tables(sqlite_store.url)["sla_events"]
    assert [(r["customer_id"], r["kind"]) for r in rows] == [("cust-B", "retracted")]
