"""What-if policies (issue 15 part 5): two replays of one history under two policy
files, as two runs, compared by the query documented in docs/sql.md."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli import build_parser, main
from pipeline.contract.event import InteractionEvent
from pipeline.contract.jsonform import write_events
from pipeline.settings_loader import load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
T0 = 1_772_438_400_000  # Monday 2026-03-02 08:00 UTC (10:00 in Helsinki)
HOUR = 3_600_000


def _policy_file(path: Path, target: str, calendar: str) -> Path:
    policy = {
        "name": "web_message_first_reply",
        "channel": "web_message",
        "metric": "first_reply",
        "target": target,
        "calendar": calendar,
    }
    path.write_text(yaml.safe_dump({"sla_policies": [policy]}), encoding="utf-8")
    return path


def _event(contact: str, at: int, type: str, **extra: Any) -> InteractionEvent:
    actor = {"agent_reply": "agent", "contact_ended": "system"}.get(type, "customer")
    return InteractionEvent(
        event_id=f"{contact}-{type}",
        occurred_at=at,
        customer_id=f"cust-{contact}",
        channel="web_message",
        contact_id=contact,
        type=type,
        actor=actor,
        **extra,
    )


def _history(path: Path) -> Path:
    """Four web messages on a Monday morning: replies after 1 h, 3 h and 30 h, and one
    the customer withdraws unanswered after 1 h."""
    events = []
    for contact, reply_after in (("w1", 1), ("w2", 3), ("w3", 30)):
        events += [
            _event(contact, T0, "customer_message"),
            _event(contact, T0 + reply_after * HOUR, "agent_reply"),
            _event(contact, T0 + (reply_after + 1) * HOUR, "contact_ended", outcome="resolved"),
        ]
    events += [
        _event("w4", T0, "customer_message"),
        _event("w4", T0 + HOUR, "contact_ended", outcome="abandoned"),
    ]
    write_events(path, sorted(events, key=lambda e: e.occurred_at))
    return path


def _documented_query() -> str:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"```sql\n(-- what-if: breach rate and service level.*?)```", text, re.S)
    assert match is not None, "docs/sql.md lost the what-if query"
    return match.group(1)


def test_two_policy_runs_compare_in_the_documented_query(tmp_path: Path) -> None:
    history = _history(tmp_path / "history.jsonl")
    db = tmp_path / "cx.db"
    two_hours = _policy_file(tmp_path / "two_hours.yaml", "2h", "24x7")
    two_days = _policy_file(tmp_path / "two_banking_days.yaml", "2d", "banking_days")
    for policy, run in ((two_hours, "two_hours"), (two_days, "two_banking_days")):
        argv = [
            "replay", str(history), "--config", str(policy), "--db", f"sqlite:///{db}",
            "--run", run, "--out", str(tmp_path / run),
        ]  # fmt: skip
        assert main(argv) == 0

    with sqlite3.connect(db) as connection:
        for run in ("two_hours", "two_banking_days"):
            connection.execute(f"ATTACH DATABASE '{tmp_path / f'cx.run_{run}.db'}' AS run_{run}")
        rows = connection.execute(_documented_query()).fetchall()
        versions = connection.execute(
            "SELECT DISTINCT policy_version FROM run_two_hours.sla_events"
        ).fetchall()
    # 2 h on 24x7: w2 and w3 breach (w4 ended before its deadline); within target
    # only w1 of 3 answered + 1 abandoned. Two banking days: no breach, 3 of 4.
    assert rows == [
        ("two_banking_days", "web_message", 4, 0, 0.0, 0.75),
        ("two_hours", "web_message", 4, 2, 0.5, 0.25),
    ]
    expected = load_settings(two_hours, environ={}).policies[0].effective_version
    assert versions == [(expected,)]


@pytest.mark.parametrize(
    "argv",
    [
        "replay ev.jsonl --config p.yaml --db sqlite:///x.db --run a",
        "replay --config p.yaml ev.jsonl --db sqlite:///x.db --run a",
        "replay --db sqlite:///x.db --run a --config p.yaml ev.jsonl",
        "--config p.yaml replay ev.jsonl --db sqlite:///x.db --run a",
        "replay --run a ev.jsonl --db sqlite:///x.db --config p.yaml",
        "replay --config=p.yaml --db=sqlite:///x.db --run=a ev.jsonl",
    ],
)
def test_every_argument_order_a_user_would_type_parses_the_same(argv: str) -> None:
    args = build_parser().parse_args(argv.split())
    assert (str(args.file), str(args.config), args.db, args.run) == (
        "ev.jsonl",
        "p.yaml",
        "sqlite:///x.db",
        "a",
    )
