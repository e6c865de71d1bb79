"""Service level per channel, queue and team in SQL (issue 15 part 4).

Service level = first replies within target / (first replies + abandoned
unanswered contacts); docs/sql.md "Service level".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pipeline.contract.event import InteractionEvent
from pipeline.replay import replay_events
from pipeline.replay_sql import write_records_to_sql
from pipeline.settings_loader import build_settings

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
SECOND = 1000

CHAT_60S = {
    "sla_policies": [
        {
            "name": "chat_first_reply",
            "channel": "chat",
            "metric": "first_reply",
            "target": "60s",
            "calendar": "24x7",
            "human_only": False,
        }
    ]
}


def _event(contact: str, at: int, type: str, team: str, queue: str, **extra: Any):
    actor = {"agent_reply": "agent", "contact_ended": "system"}.get(type, "customer")
    return InteractionEvent(
        event_id=f"{contact}-{type}-{at}",
        occurred_at=at,
        customer_id=f"cust-{contact}",
        channel="chat",
        contact_id=contact,
        type=type,
        actor=actor,
        team=team,
        queue=queue,
        **extra,
    )


def _contact(contact: str, team: str, queue: str, reply_after_s: int | None) -> list:
    """A chat: a customer message at T0, a reply after ``reply_after_s`` (None: the
    customer leaves after 120 s unanswered), then the end."""
    events = [_event(contact, T0, "customer_message", team, queue)]
    if reply_after_s is None:
        events.append(
            _event(contact, T0 + 120 * SECOND, "contact_ended", team, queue, outcome="abandoned")
        )
        return events
    events.append(_event(contact, T0 + reply_after_s * SECOND, "agent_reply", team, queue))
    events.append(
        _event(contact, T0 + 300 * SECOND, "contact_ended", team, queue, outcome="resolved")
    )
    return events


def _events() -> list:
    return [
        *_contact("a1", "alpha", "cards", 30),  # within target
        *_contact("a2", "alpha", "cards", 90),  # answered, breached
        *_contact("a3", "alpha", "loans", None),  # abandoned
        *_contact("b1", "beta", "cards", 10),  # within target
        *_contact("b2", "beta", "loans", None),  # abandoned
        *_contact("b3", "beta", "loans", 59),  # within target (strictly before 60 s)
    ]


def _rows(tmp_path: Path, query: str) -> list[tuple]:
    url = f"sqlite:///{tmp_path}/cx.db"
    settings = build_settings({**CHAT_60S, "sql": {"url": url}})
    write_records_to_sql(replay_events(_events(), settings, partitions=2).records, settings)
    with sqlite3.connect(tmp_path / "cx.db") as db:
        return db.execute(query).fetchall()


def test_service_level_per_team_counts_answers_within_target_over_answered_plus_abandoned(
    tmp_path: Path,
) -> None:
    rows = _rows(
        tmp_path,
        "SELECT team, answered, answered_within_target, abandoned, service_level"
        " FROM service_level_by_team ORDER BY team",
    )
    # alpha: 1 within of 2 answered + 1 abandoned; beta: 2 within of 2 answered + 1 abandoned.
    assert rows == [("alpha", 2, 1, 1, 1 / 3), ("beta", 2, 2, 1, 2 / 3)]


def test_service_level_per_queue_and_per_channel_queue_team(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cx.db"
    settings = build_settings({**CHAT_60S, "sql": {"url": url}})
    write_records_to_sql(replay_events(_events(), settings, partitions=2).records, settings)
    with sqlite3.connect(tmp_path / "cx.db") as db:
        by_queue = db.execute(
            "SELECT queue, answered, answered_within_target, abandoned, service_level"
            " FROM service_level_by_queue ORDER BY queue"
        ).fetchall()
        cells = db.execute(
            "SELECT channel, queue, team, service_level FROM service_level"
            " ORDER BY channel, queue, team"
        ).fetchall()
        sla = db.execute(
            "SELECT contact_id, kind, queue, team, policy_version FROM sla_events"
            " WHERE kind = 'breach' ORDER BY contact_id"
        ).fetchall()
    assert by_queue == [("cards", 3, 2, 0, 2 / 3), ("loans", 1, 1, 2, 1 / 3)]
    assert cells == [
        ("chat", "cards", "alpha", 0.5),
        ("chat", "cards", "beta", 1.0),
        ("chat", "loans", "alpha", 0.0),
        ("chat", "loans", "beta", 0.5),
    ]
    version = settings.policies[0].effective_version
    # The abandoned chats waited 120 s unanswered: their clocks breached too.
    assert sla == [
        ("a2", "breach", "cards", "alpha", version),
        ("a3", "breach", "loans", "alpha", version),
        ("b2", "breach", "loans", "beta", version),
    ]
