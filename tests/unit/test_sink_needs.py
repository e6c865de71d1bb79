"""SQL of needs and bouncing (issue 15, parts 1 and 2): the core's records through
the SQLite store, and the bounce-rate views per first channel and per topic."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.sink.store import SqlStore, dump_tables
from tests.unit.core_standins import HOUR, MINUTE, T0, contact, make_processor, run

DAY = 24 * HOUR


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    sql_store = SqlStore(f"sqlite:///{tmp_path}/cx.db")
    sql_store.create_schema()
    yield sql_store
    sql_store.dispose()


def _call(start: int, cid: str, channel: str, customer: str, topic: str, outcome: str):
    return contact(
        start,
        start + 10 * MINUTE,
        contact=cid,
        channel=channel,
        outcome=outcome,
        customer=customer,
        topic=topic,
    )


def _events() -> list:
    """Three needs: c1 card bounced (chat, phone, chat), c2 card resolved at once
    (chat), c3 loan over two phone calls (not bounced); in time order (one partition
    clock)."""
    events = (
        _call(T0, "a1", "chat", "c1", "card", "unresolved")
        + _call(T0 + HOUR, "a2", "phone", "c1", "card", "unresolved")
        + _call(T0 + DAY, "a3", "chat", "c1", "card", "resolved")
        + _call(T0, "b1", "chat", "c2", "card", "resolved")
        + _call(T0, "d1", "phone", "c3", "loan", "unresolved")
        + _call(T0 + DAY, "d2", "phone", "c3", "loan", "resolved")
    )
    return sorted(events, key=lambda event: event.occurred_at)


def _write(store: SqlStore, records: list) -> None:
    # The store takes the records in emission order, as the sink consumer does.
    store.write([(r.OUTPUT_NAME, r.to_dict()) for r in records])


def test_needs_land_one_row_per_need_with_the_final_version(store: SqlStore):
    _write(store, run(make_processor(), _events()))
    needs = {r["need_id"]: r for r in dump_tables(store.url)["needs"]}

    bounced = needs[f"c1:card:{T0}"]
    assert (bounced["status"], bounced["contacts"], bounced["channel_path"]) == (
        "final",
        3,
        "chat>phone>chat",
    )
    assert (bounced["channels"], bounced["bounced"], bounced["resolved"]) == (2, True, True)
    assert sorted(needs) == [f"c1:card:{T0}", f"c2:card:{T0}", f"c3:loan:{T0}"]
    signals = dump_tables(store.url)["bounce_signals"]
    assert [(s["signal_id"], s["to_contact_id"]) for s in signals] == [
        (f"c1:card:{T0}:bounced", "a3")
    ]


def test_an_older_need_record_does_not_replace_a_newer_one(store: SqlStore):
    records = [r for r in run(make_processor(), _events()) if r.OUTPUT_NAME == "need"]
    _write(store, records)
    _write(store, records[:1])  # a redelivered first open update

    needs = {r["need_id"]: r for r in dump_tables(store.url)["needs"]}
    assert needs[f"c1:card:{T0}"]["status"] == "final"


def test_bounce_rate_views_rate_closed_needs_per_first_channel_and_per_topic(store: SqlStore):
    _write(store, run(make_processor(), _events()))
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as db:
        by_channel = db.execute(
            "SELECT first_channel, needs, bounced, bounce_rate"
            " FROM bounce_rate_by_first_channel ORDER BY first_channel"
        ).fetchall()
        by_topic = db.execute(
            "SELECT topic, needs, bounced, bounce_rate FROM bounce_rate_by_topic ORDER BY topic"
        ).fetchall()

    assert by_channel == [("chat", 2, 1, 0.5), ("phone", 1, 0, 0.0)]
    assert by_topic == [("card", 2, 1, 0.5), ("loan", 1, 0, 0.0)]
