"""The ops wall's SQL: every history figure, read from the sink's tables.

Pure SQLAlchemy Core over the models of :mod:`pipeline.sink.models`, so the same
statements run on SQLite and PostgreSQL. The definitions of the figures are in
docs/ops.md, "The fleet-wide wall"; each function takes a connection and a window
(aware UTC datetimes, start inclusive, end exclusive) and returns plain values.

``group`` is the column the figures are split by: ``channel`` always exists;
``queue`` and ``team`` only from migration 0005 (:func:`group_columns` says which
the database has), so the wall degrades to channels on an older schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    and_,
    case,
    column,
    func,
    inspect,
    literal,
    select,
    table,
)
from sqlalchemy.sql.elements import ColumnElement

from pipeline.sink.models import ChannelStatsRow, ContactRow, SlaEventRow, SwitchFailureRow

CONTACTS = ContactRow.__table__
SLA_EVENTS = SlaEventRow.__table__
SWITCH_FAILURES = SwitchFailureRow.__table__
CHANNEL_STATS = ChannelStatsRow.__table__

GROUPS = ("channel", "queue", "team")


@dataclass(frozen=True, slots=True)
class AnswerFigures:
    """Contacts of one group started in one window (docs/ops.md)."""

    answered: int  # got a first reply
    within_target: int  # of them, within the channel's first-reply target
    abandoned: int  # ended abandoned without a first reply
    answer_seconds_sum: float  # sum of first_reply_seconds of the answered

    @property
    def offered(self) -> int:
        return self.answered + self.abandoned

    @property
    def service_level(self) -> float | None:
        """within_target / (answered + abandoned); None when nothing was offered."""
        return self.within_target / self.offered if self.offered else None

    @property
    def average_speed_of_answer(self) -> float | None:
        return self.answer_seconds_sum / self.answered if self.answered else None

    @property
    def abandonment(self) -> float | None:
        return self.abandoned / self.offered if self.offered else None


@dataclass(frozen=True, slots=True)
class TrendPoint:
    hour: datetime  # UTC start of the hour bucket
    contacts_started: int
    sla_breaches: int


def group_columns(conn: Connection) -> tuple[str, ...]:
    """The grouping columns both ``contacts`` and ``sla_events`` have here."""
    inspector = inspect(conn)
    have = [
        {column["name"] for column in inspector.get_columns(table)}
        for table in ("contacts", "sla_events")
    ]
    return tuple(g for g in GROUPS if all(g in columns for columns in have))


def _group_expr(table_name: str, group: str) -> ColumnElement[str]:
    if group not in GROUPS:
        raise ValueError(f"unknown wall group {group!r}")
    table = CONTACTS if table_name == "contacts" else SLA_EVENTS
    if group in table.c:
        return func.coalesce(table.c[group], "")
    # queue/team from migration 0005 are not in the models this module imports:
    # refer to them by name (group_columns checked that the database has them).
    return func.coalesce(column(group, is_literal=False), "")


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def answer_figures(
    conn: Connection,
    start: datetime,
    end: datetime,
    targets: Mapping[str, float],
    group: str = "channel",
) -> dict[str, AnswerFigures]:
    """Service-level inputs per group for contacts started in ``[start, end)``.

    ``targets``: the first-reply target in seconds per channel; a contact of a
    channel without one never counts as within target.
    """
    c = CONTACTS.c
    key = _group_expr("contacts", group).label("grp")
    target = (
        case(
            *((c.channel == channel, literal(seconds)) for channel, seconds in targets.items()),
            else_=None,
        )
        if targets
        else literal(None)
    )
    answered = c.first_reply_seconds.is_not(None)
    abandoned = and_(c.outcome == "abandoned", c.first_reply_seconds.is_(None))
    statement = (
        select(
            key,
            func.count(c.first_reply_seconds).label("answered"),
            _count_if(and_(answered, c.first_reply_seconds <= target)).label("within"),
            _count_if(abandoned).label("abandoned"),
            func.coalesce(func.sum(c.first_reply_seconds), 0.0).label("seconds"),
        )
        .select_from(CONTACTS)
        .where(c.started_at >= start, c.started_at < end)
        .group_by(key)
    )
    return {
        row.grp: AnswerFigures(
            int(row.answered), int(row.within), int(row.abandoned), float(row.seconds)
        )
        for row in conn.execute(statement)
    }


def sla_counts(
    conn: Connection, start: datetime, end: datetime, group: str = "channel"
) -> dict[str, dict[str, int]]:
    """``{group: {"warning": n, "breach": m}}`` fired in ``[start, end)``.

    Retracted warnings and breaches have kind ``retracted`` and count nowhere.
    """
    s = SLA_EVENTS.c
    key = _group_expr("sla_events", group).label("grp")
    statement = (
        select(key, s.kind, func.count().label("n"))
        .select_from(SLA_EVENTS)
        .where(s.kind.in_(("warning", "breach")), s.fired_at >= start, s.fired_at < end)
        .group_by(key, s.kind)
    )
    counts: dict[str, dict[str, int]] = {}
    for row in conn.execute(statement):
        counts.setdefault(row.grp, {"warning": 0, "breach": 0})[row.kind] = int(row.n)
    return counts


def switch_failures(conn: Connection, start: datetime, end: datetime) -> dict[str, int]:
    """Channel-switch failures in ``[start, end)`` by the channel the customer left."""
    f = SWITCH_FAILURES.c
    statement = (
        select(f.from_channel, func.count().label("n"))
        .where(f.occurred_at >= start, f.occurred_at < end)
        .group_by(f.from_channel)
    )
    return {row.from_channel: int(row.n) for row in conn.execute(statement)}


def bounces(conn: Connection, start: datetime, end: datetime) -> dict[str, int] | None:
    """Bounces (``bounce_signals`` rows, migration 0004) in ``[start, end)`` by the
    channel of the need's first contact; None when the database has no such table."""
    if not inspect(conn).has_table("bounce_signals"):
        return None
    # Named by hand: the table is newer than some databases the wall reads.
    signals = table(
        "bounce_signals", column("from_channel"), column("occurred_at", DateTime(timezone=True))
    )
    statement = (
        select(signals.c.from_channel, func.count().label("n"))
        .where(signals.c.occurred_at >= start, signals.c.occurred_at < end)
        .group_by(signals.c.from_channel)
    )
    return {row.from_channel: int(row.n) for row in conn.execute(statement)}


def hourly_trend(conn: Connection, start: datetime, hours: int) -> dict[str, list[TrendPoint]]:
    """Per channel, contacts started and breaches per UTC hour from ``start``.

    Read from ``channel_stats`` hour rows, which equal a ``GROUP BY`` over the base
    tables (docs/sql.md); hours without a row are zeros. ``start`` is an hour start.
    """
    s = CHANNEL_STATS.c
    statement = select(
        s.channel,
        s.bucket_start,
        s.contacts_started.cast(Integer),
        s.sla_breaches.cast(Integer),
    ).where(s.bucket_size == "hour", s.bucket_start >= start)
    found: dict[str, dict[datetime, tuple[int, int]]] = {}
    for channel, bucket, started, breaches in conn.execute(statement):
        if bucket.tzinfo is None:  # SQLite gives naive UTC
            bucket = bucket.replace(tzinfo=UTC)
        found.setdefault(channel, {})[bucket] = (int(started), int(breaches))
    hours_list = [start + timedelta(hours=i) for i in range(hours)]
    return {
        channel: [TrendPoint(h, *by_hour.get(h, (0, 0))) for h in hours_list]
        for channel, by_hour in found.items()
    }
