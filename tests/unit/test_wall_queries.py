"""The ops wall's SQL figures on SQLite, against hand-built rows whose figures are
worked out by hand in each test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, insert

from pipeline.sink.store import SqlStore
from pipeline.wall_queries import (
    CHANNEL_STATS,
    CONTACTS,
    SLA_EVENTS,
    SWITCH_FAILURES,
    AnswerFigures,
    TrendPoint,
    answer_figures,
    bounces,
    group_columns,
    hourly_trend,
    sla_counts,
    switch_failures,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TARGETS = {"phone": 180.0, "chat": 60.0}


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Connection]:
    url = f"sqlite:///{tmp_path / 'wall.db'}"
    store = SqlStore(url)
    store.create_schema()
    store.dispose()
    engine = create_engine(url)
    with engine.begin() as connection:
        yield connection
    engine.dispose()


def contact(cid: str, channel: str, started: datetime, **extra: Any) -> dict[str, Any]:
    row = {
        "contact_id": cid,
        "customer_id": "c-" + cid,
        "session_id": "s-" + cid,
        "channel": channel,
        "started_at": started,
        "ended_at": None,
        "outcome": None,
        "topic": None,
        "first_reply_seconds": None,
        "first_reply_business_seconds": None,
        "breached": False,
        "events": 2,
        "version": 1,
    }
    row.update(extra)
    return row


def sla_event(eid: str, kind: str, channel: str, fired: datetime) -> dict[str, Any]:
    return {
        "sla_event_id": f"{eid}:{kind}",
        "kind": kind,
        "customer_id": "c",
        "contact_id": eid,
        "channel": channel,
        "policy": "p",
        "metric": "first_reply",
        "clock_started_at": fired - timedelta(minutes=3),
        "deadline": fired,
        "target_seconds": 180.0,
        "calendar": "24x7",
        "fired_at": fired,
        "replied_at": None,
        "overrun_seconds": None,
    }


def test_service_level_asa_and_abandonment_of_one_window(conn: Connection) -> None:
    minute = timedelta(minutes=1)
    conn.execute(
        insert(CONTACTS),
        [
            # phone, target 180 s: answered in 30, 180 (boundary counts), 240; one
            # abandoned unanswered; one still waiting (neither answered nor abandoned).
            contact("p1", "phone", T0, first_reply_seconds=30.0),
            contact("p2", "phone", T0 + minute, first_reply_seconds=180.0),
            contact("p3", "phone", T0 + 2 * minute, first_reply_seconds=240.0),
            contact("p4", "phone", T0 + 3 * minute, outcome="abandoned", ended_at=T0),
            contact("p5", "phone", T0 + 4 * minute),
            # abandoned after a reply: answered, not abandoned.
            contact("p6", "phone", T0 + 5 * minute, first_reply_seconds=90.0, outcome="abandoned"),
            # outside the window on both sides.
            contact("p7", "phone", T0 - minute, first_reply_seconds=1.0),
            contact("p8", "phone", T0 + 15 * minute, first_reply_seconds=1.0),
            # branch has no target: answered, never within target.
            contact("b1", "branch", T0, first_reply_seconds=10.0),
        ],
    )
    figures = answer_figures(conn, T0, T0 + 15 * minute, TARGETS)

    phone = figures["phone"]
    assert phone == AnswerFigures(
        answered=4, within_target=3, abandoned=1, answer_seconds_sum=540.0
    )
    # 3 within target of 4 answered + 1 abandoned.
    assert phone.service_level == pytest.approx(0.6)
    assert phone.average_speed_of_answer == pytest.approx(135.0)  # (30+180+240+90)/4
    assert phone.abandonment == pytest.approx(0.2)
    assert figures["branch"] == AnswerFigures(1, 0, 0, 10.0)
    assert figures["branch"].service_level == 0.0
    assert set(figures) == {"phone", "branch"}


def test_a_window_with_nothing_offered_has_no_rates() -> None:
    empty = AnswerFigures(0, 0, 0, 0.0)
    assert (empty.service_level, empty.average_speed_of_answer, empty.abandonment) == (
        None,
        None,
        None,
    )


def test_sla_counts_skip_retracted_and_completed_rows_and_honour_the_window(
    conn: Connection,
) -> None:
    conn.execute(
        insert(SLA_EVENTS),
        [
            sla_event("a", "warning", "phone", T0),
            sla_event("a", "breach", "phone", T0 + timedelta(minutes=1)),
            sla_event("b", "retracted", "phone", T0),
            sla_event("c", "completed", "phone", T0),
            sla_event("d", "breach", "chat", T0 + timedelta(minutes=59)),
            sla_event("e", "breach", "chat", T0 + timedelta(hours=1)),  # end is exclusive
            sla_event("f", "warning", "chat", T0 - timedelta(seconds=1)),
        ],
    )
    counts = sla_counts(conn, T0, T0 + timedelta(hours=1))
    assert counts == {"phone": {"warning": 1, "breach": 1}, "chat": {"warning": 0, "breach": 1}}


def test_switch_failures_count_by_the_channel_left(conn: Connection) -> None:
    def failure(sid: str, source: str, target: str, at: datetime) -> dict[str, Any]:
        return {
            "signal_id": sid,
            "customer_id": "c",
            "from_contact_id": "x",
            "from_channel": source,
            "from_outcome": "unresolved",
            "to_contact_id": "y",
            "to_channel": target,
            "gap_seconds": 60.0,
            "topic": None,
            "occurred_at": at,
        }

    conn.execute(
        insert(SWITCH_FAILURES),
        [
            failure("1", "chat", "phone", T0 + timedelta(minutes=5)),
            failure("2", "chat", "branch", T0 + timedelta(minutes=50)),
            failure("3", "phone", "chat", T0 + timedelta(minutes=10)),
            failure("4", "chat", "phone", T0 - timedelta(minutes=1)),
        ],
    )
    assert switch_failures(conn, T0, T0 + timedelta(hours=1)) == {"chat": 2, "phone": 1}


def test_hourly_trend_fills_missing_hours_with_zeros(conn: Connection) -> None:
    def stats(hour: datetime, channel: str, started: int, breaches: int) -> dict[str, Any]:
        return {
            "bucket_size": "hour",
            "bucket_start": hour,
            "channel": channel,
            "contacts_started": started,
            "sla_breaches": breaches,
        }

    conn.execute(
        insert(CHANNEL_STATS),
        [
            stats(T0, "phone", 12, 1),
            stats(T0 + timedelta(hours=2), "phone", 7, 0),
            stats(T0 - timedelta(hours=1), "phone", 99, 9),  # before the trend
            {**stats(T0, "phone", 5, 5), "bucket_size": "minute"},  # minute rows ignored
        ],
    )
    trend = hourly_trend(conn, T0, 3)
    assert trend == {
        "phone": [
            TrendPoint(T0, 12, 1),
            TrendPoint(T0 + timedelta(hours=1), 0, 0),
            TrendPoint(T0 + timedelta(hours=2), 7, 0),
        ]
    }


def test_the_schema_without_queue_columns_groups_by_channel_only(conn: Connection) -> None:
    columns = group_columns(conn)
    assert columns[0] == "channel"
    assert set(columns) <= {"channel", "queue", "team"}


def test_an_unknown_group_is_refused(conn: Connection) -> None:
    with pytest.raises(ValueError, match="unknown wall group"):
        answer_figures(conn, T0, T0, TARGETS, group="desk")


def test_bounces_count_by_first_channel_and_are_absent_without_the_table(
    conn: Connection, tmp_path: Path
) -> None:
    from sqlalchemy import inspect, text

    if not inspect(conn).has_table("bounce_signals"):  # before migration 0004 lands
        conn.execute(
            text(
                "CREATE TABLE bounce_signals (signal_id VARCHAR PRIMARY KEY,"
                " from_channel VARCHAR, occurred_at DATETIME)"
            )
        )
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    for sid, channel, at in (
        ("1", "chat", T0 + timedelta(minutes=10)),
        ("2", "chat", T0 + timedelta(minutes=20)),
        ("3", "phone", T0 - timedelta(minutes=1)),  # before the window
    ):
        columns = {c["name"] for c in inspect(conn).get_columns("bounce_signals")}
        values = {"signal_id": sid, "from_channel": channel, "occurred_at": at.strftime(fmt)}
        # The real table has more NOT NULL columns: fill them with plain values.
        filler = {c: "x" for c in columns - set(values) - {"gap_seconds"}}
        if "gap_seconds" in columns:
            filler["gap_seconds"] = "0"
        row = {**values, **filler}
        names = ", ".join(row)
        conn.execute(
            text(
                f"INSERT INTO bounce_signals ({names}) VALUES ({', '.join(':' + n for n in row)})"
            ),
            row,
        )
    assert bounces(conn, T0, T0 + timedelta(hours=1)) == {"chat": 2}

    empty = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with empty.connect() as old:
        assert bounces(old, T0, T0 + timedelta(hours=1)) is None
    empty.dispose()
