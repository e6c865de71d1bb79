"""Per-minute/hour stats per queue and team, and a need's queue and team (issue 15 part 4).

``queue_team_stats`` splits the contact and SLA counters of ``channel_stats`` by
queue and team; summed per channel they are ``channel_stats``'s own numbers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.replay import replay_events
from pipeline.replay_sql import write_records_to_sql
from pipeline.settings_loader import build_settings
from tests.unit.test_service_level_metrics import _events

COUNTERS = (
    "contacts_started",
    "first_reply_count",
    "first_reply_sum_seconds",
    "contacts_ended",
    "resolved",
    "unresolved",
    "abandoned",
    "transferred",
    "sla_warnings",
    "sla_breaches",
)
# The documented roll-up (docs/sql.md "Stats per queue and team").
ROLL_UP = (
    "SELECT bucket_size, bucket_start, channel, "
    + ", ".join(f"SUM({name})" for name in COUNTERS)
    + " FROM queue_team_stats GROUP BY bucket_size, bucket_start, channel"
)


def _database(tmp_path: Path) -> Path:
    database = tmp_path / "cx.db"
    settings = build_settings({"sql": {"url": f"sqlite:///{database}"}})
    write_records_to_sql(replay_events(_events(), settings, partitions=4).records, settings)
    return database


def _rounded(rows: list[tuple]) -> set[tuple]:
    # Sums of float seconds may differ in the last bits by summation order.
    return {tuple(round(v, 6) if isinstance(v, float) else v for v in row) for row in rows}


def test_queue_team_stats_rolled_up_per_channel_equal_channel_stats(tmp_path: Path) -> None:
    with sqlite3.connect(_database(tmp_path)) as db:
        rolled_up = db.execute(ROLL_UP).fetchall()
        channel_stats = db.execute(
            "SELECT bucket_size, bucket_start, channel, "
            + ", ".join(COUNTERS)
            + " FROM channel_stats WHERE "
            + " OR ".join(f"{name} <> 0" for name in COUNTERS)
        ).fetchall()
        split = db.execute(
            "SELECT COUNT(DISTINCT COALESCE(queue, '-') || '/' || COALESCE(team, '-'))"
            " FROM queue_team_stats WHERE bucket_size = 'hour'"
        ).fetchone()[0]
    assert len(rolled_up) > 100
    assert _rounded(rolled_up) == _rounded(channel_stats)
    # 4 queues (one of them NULL) x 4 teams (one NULL) appear as their own rows.
    assert split == 16


def test_queue_team_stats_split_an_hour_by_queue_and_team_with_null_for_none(
    tmp_path: Path,
) -> None:
    with sqlite3.connect(_database(tmp_path)) as db:
        hour, channel = db.execute(
            "SELECT bucket_start, channel FROM channel_stats WHERE bucket_size = 'hour'"
            " ORDER BY contacts_started DESC, bucket_start LIMIT 1"
        ).fetchone()
        total = db.execute(
            "SELECT contacts_started FROM channel_stats WHERE bucket_size = 'hour'"
            " AND bucket_start = ? AND channel = ?",
            (hour, channel),
        ).fetchone()[0]
        cells = db.execute(
            "SELECT queue, team, contacts_started FROM queue_team_stats"
            " WHERE bucket_size = 'hour' AND bucket_start = ? AND channel = ?",
            (hour, channel),
        ).fetchall()
        by_contacts = db.execute(
            "SELECT queue, team, COUNT(*) FROM contacts WHERE channel = ?"
            " AND strftime('%Y-%m-%d %H:00:00.000000', started_at) = ? GROUP BY queue, team",
            (channel, hour),
        ).fetchall()
    assert sum(count for _, _, count in cells) == total
    assert {(q, t, n) for q, t, n in cells if n} == set(by_contacts)
    assert any(queue is None for queue, _, _ in cells)


def test_a_need_has_the_queue_and_team_of_its_first_contact(tmp_path: Path) -> None:
    with sqlite3.connect(_database(tmp_path)) as db:
        rows = db.execute(
            "SELECT n.need_id, n.first_contact_id, v.queue, v.team, c.queue, c.team, c.started_at,"
            " n.opened_at FROM needs n JOIN need_queue_team v ON v.need_id = n.need_id"
            " JOIN contacts c ON c.contact_id = n.first_contact_id"
        ).fetchall()
        needs = db.execute("SELECT COUNT(*) FROM needs").fetchone()[0]
    assert len(rows) == needs > 50
    for _, _, queue, team, contact_queue, contact_team, started_at, opened_at in rows:
        assert (queue, team) == (contact_queue, contact_team)
        assert started_at == opened_at  # the first contact opened the need
