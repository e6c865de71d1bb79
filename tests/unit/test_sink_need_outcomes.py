"""SQL of FCR by need, bot containment and feedback (issue 13, defects 6 and 7)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.records import ContactSummary, SessionRecord
from pipeline.sink.store import SqlStore, dump_tables

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
MINUTE = 60_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    sql_store = SqlStore(f"sqlite:///{tmp_path}/cx.db")
    sql_store.create_schema()
    yield sql_store
    sql_store.dispose()


def _feedback(feedback_id: str, score: int, at: int, contact_id: str = "k1") -> dict[str, Any]:
    return {
        "feedback_id": feedback_id,
        "contact_id": contact_id,
        "channel": "chat",
        "kind": "nps",
        "score": score,
        "given_at": at,
    }


def session(session_id: str = "s1", status: str = "final", **overrides: Any) -> tuple[str, dict]:
    fields: dict[str, Any] = {
        "session_id": session_id, "customer_id": "cust-1", "status": status,
        "started_at": T0, "ended_at": T0 + 10 * MINUTE, "channel_path": ["chat"],
        "contacts": 1, "events": 5, "channel_switches": 0, "first_contact_resolved": False,
        "resolved_at_end": True, "switch_failures": 0, "sla_breaches": 0, "nps_score": 4,
        "contact_ids": ["k1"], "version": 1, "fcr_undecided": True,
        "first_outcome_resolved": True, "nps_average": 6.5,
        "feedback": [_feedback("f1", 9, T0 + 5 * MINUTE), _feedback("f2", 4, T0 + 6 * MINUTE)],
    }  # fmt: skip
    fields.update(overrides)
    return "session", SessionRecord(**fields).to_dict()


def contact(contact_id: str, topic: str, **overrides: Any) -> tuple[str, dict]:
    fields: dict[str, Any] = {
        "contact_id": contact_id, "customer_id": "cust-1", "channel": "chat",
        "session_id": "s1", "started_at": T0, "ended_at": T0 + 2 * MINUTE,
        "outcome": "resolved", "topic": topic, "first_reply_seconds": 1.0,
        "first_reply_business_seconds": 1.0, "breached": False, "events": 4, "version": 1,
    }  # fmt: skip
    fields.update(overrides)
    return "contact", ContactSummary(**fields).to_dict()


def test_an_undecided_journey_has_a_null_fcr_and_keeps_its_first_outcome(store: SqlStore):
    store.write([session()])
    [row] = dump_tables(store.url)["sessions"]
    assert (
        row["first_contact_resolved"],
        row["first_outcome_resolved"],
        row["nps_score"],
        row["nps_average"],
    ) == (None, True, 4, 6.5)


def test_the_fcr_denominator_counts_decided_journeys_only(store: SqlStore):
    store.write([session("s1"), session("s2", fcr_undecided=False, first_contact_resolved=True)])
    hours = [r for r in dump_tables(store.url)["channel_stats"] if r["bucket_size"] == "hour"]
    assert [(r["fcr_numerator"], r["fcr_denominator"]) for r in hours] == [(1, 1)]


def test_every_feedback_of_a_journey_is_one_feedback_row(store: SqlStore):
    store.write([session()])
    store.write([session(version=2)])  # sent again: the same rows
    rows = dump_tables(store.url)["feedback"]
    assert [
        (r["feedback_id"], r["session_id"], r["contact_id"], r["kind"], r["score"], r["given_at"])
        for r in rows
    ] == [
        ("f1", "s1", "k1", "nps", 9, "2026-03-02T08:05:00+00:00"),
        ("f2", "s1", "k1", "nps", 4, "2026-03-02T08:06:00+00:00"),
    ]
    assert {(r["customer_id"], r["channel"]) for r in rows} == {("cust-1", "chat")}


def test_a_superseded_journey_leaves_its_feedback_to_the_survivor(store: SqlStore):
    store.write([session("s1", status="open"), session("s0", feedback=[])])
    store.write([session("s1", status="superseded", superseded_by="s0", version=2, feedback=[])])
    store.write([session("s0", version=2)])
    rows = dump_tables(store.url)["feedback"]
    assert [(r["feedback_id"], r["session_id"]) for r in rows] == [("f1", "s0"), ("f2", "s0")]


def test_contacts_carry_fcr_bot_only_and_containment_and_the_view_rates_them(store: SqlStore):
    store.write(
        [
            contact("b1", "card", bot_only=True, contained=True, first_contact_resolved=True),
            contact("b2", "card", bot_only=True, contained=False, first_contact_resolved=False),
            contact("b3", "card", bot_only=True, contained=None, first_contact_resolved=None),
            contact("b4", "loan", bot_only=True, contained=True, first_contact_resolved=True),
            contact("h1", "card", first_contact_resolved=True),
        ]
    )
    contacts = {r["contact_id"]: r for r in dump_tables(store.url)["contacts"]}
    assert (contacts["b3"]["bot_only"], contacts["b3"]["contained"]) == (True, None)
    assert (contacts["h1"]["bot_only"], contacts["h1"]["first_contact_resolved"]) == (False, True)
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as db:
        view = db.execute(
            "SELECT channel, topic, bot_contacts, contained, containment_rate"
            " FROM containment ORDER BY channel, topic"
        ).fetchall()
    assert view == [("chat", "card", 2, 1, 0.5), ("chat", "loan", 1, 1, 1.0)]
