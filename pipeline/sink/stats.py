"""Derivation of ``channel_stats`` from the base tables.

channel_stats is never incremented: a redelivered or replayed batch would then
count twice. Instead, inside the batch's transaction, every (bucket_size,
bucket_start, channel) the batch may have changed is deleted and recomputed with
one set-based ``INSERT ... SELECT ... GROUP BY``: minute rows from the base
tables, then hour rows from the minute rows (cheap: at most 60 per channel).
Recomputing more buckets than strictly needed is harmless (the result is the
same), so affected buckets are merged into a few time ranges per size.

Which timestamp puts a counter into a bucket (the channel column in brackets):

- contacts_started, first_reply_*: ``contacts.started_at`` (channel)
- contacts_ended, resolved, unresolved, abandoned, transferred: ``contacts.ended_at``
- fcr_*, nps_*: ``sessions.started_at`` of final sessions (first_channel)
- sla_warnings, sla_breaches: ``sla_events.fired_at`` (channel)
- switch_failures_out / _in: ``channel_switch_failures.occurred_at``
  (from_channel / to_channel)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Select,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)

from pipeline.core.records import SESSION_FINAL, SLA_BREACH, SLA_WARNING
from pipeline.sink.models import (
    FIRST_REPLY_BUCKETS,
    STATS_COUNTERS,
    ChannelStatsRow,
    ContactRow,
    SessionRow,
    SlaEventRow,
    SwitchFailureRow,
    ms_to_utc,
)

BUCKET_MS: dict[str, int] = {"minute": 60_000, "hour": 3_600_000}

# Affected buckets closer than this many buckets apart are recomputed as one
# range: one range scan beats many tiny ones, and extra buckets cost little.
_MERGE_GAP_BUCKETS = 3

# SQLAlchemy stores SQLite datetimes as text in this shape; a derived
# bucket_start must use it too or the primary key would not match.
_SQLITE_BUCKET_FORMAT = {"minute": "%Y-%m-%d %H:%M:00.000000", "hour": "%Y-%m-%d %H:00:00.000000"}


@dataclass(frozen=True, slots=True)
class Touch:
    """A base-table row's contribution point: a channel and an epoch-ms timestamp."""

    channel: str
    at_ms: int


def bucket_ranges(at_ms: Iterable[int], size: str) -> list[tuple[int, int]]:
    """Half-open epoch-ms ranges, aligned to ``size``, covering every bucket of ``at_ms``."""
    width = BUCKET_MS[size]
    starts = sorted({ms - ms % width for ms in at_ms})
    ranges: list[tuple[int, int]] = []
    for start in starts:
        if ranges and start <= ranges[-1][1] + _MERGE_GAP_BUCKETS * width:
            ranges[-1] = (ranges[-1][0], start + width)
        else:
            ranges.append((start, start + width))
    return ranges


def recompute_channel_stats(conn: Connection, touches: Iterable[Touch]) -> None:
    """Delete and re-derive every channel_stats row the touches fall into.

    Runs on ``conn`` inside the caller's transaction.
    """
    touches = list(touches)
    if not touches:
        return
    channels = sorted({touch.channel for touch in touches})
    dialect = conn.dialect.name
    stats = ChannelStatsRow.__table__
    for size, derive in (("minute", _derive_minutes), ("hour", _derive_hours)):
        ranges = bucket_ranges((touch.at_ms for touch in touches), size)
        conn.execute(
            delete(stats).where(
                stats.c.bucket_size == size,
                stats.c.channel.in_(channels),
                _in_ranges(stats.c.bucket_start, ranges),
            )
        )
        columns = ["bucket_size", "bucket_start", "channel", *STATS_COUNTERS]
        conn.execute(insert(stats).from_select(columns, derive(channels, ranges, dialect)))


def _in_ranges(column: ColumnElement, ranges: Sequence[tuple[int, int]]) -> ColumnElement[bool]:
    return or_(*(and_(column >= ms_to_utc(lo), column < ms_to_utc(hi)) for lo, hi in ranges))


def _bucket(column: ColumnElement, size: str, dialect: str) -> ColumnElement:
    if dialect == "postgresql":
        # The three-argument form truncates in UTC whatever the session time zone.
        return func.date_trunc(size, column, "UTC")
    return func.strftime(_SQLITE_BUCKET_FORMAT[size], column)


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


def _row(bucket: ColumnElement, channel: ColumnElement, **counters: ColumnElement) -> list:
    """One UNION branch: bucket, channel and every counter (0 unless given)."""
    columns: list[ColumnElement] = [bucket.label("bucket_start"), channel.label("channel")]
    for name in STATS_COUNTERS:
        value = counters.get(name)
        if value is None:
            value = cast(literal(0.0), Float) if name == "first_reply_sum_seconds" else literal(0)
        columns.append(value.label(name))
    return columns


def _derive_hours(channels: list[str], ranges: list[tuple[int, int]], dialect: str) -> Select:
    """Hour rows as sums of their (already re-derived) minute rows: an hour holds
    thousands of base rows but at most 60 minute rows per channel."""
    minutes = ChannelStatsRow.__table__.c
    hour = _bucket(minutes.bucket_start, "hour", dialect)
    return (
        select(
            literal("hour").label("bucket_size"),
            hour.label("bucket_start"),
            minutes.channel,
            *(func.sum(minutes[name]).label(name) for name in STATS_COUNTERS),
        )
        .where(
            minutes.bucket_size == "minute",
            minutes.channel.in_(channels),
            _in_ranges(minutes.bucket_start, ranges),
        )
        .group_by(hour, minutes.channel)
    )


def _derive_minutes(channels: list[str], ranges: list[tuple[int, int]], dialect: str) -> Select:
    """Minute rows straight from the base tables."""
    size = "minute"
    contacts, sessions = ContactRow.__table__.c, SessionRow.__table__.c
    sla, switches = SlaEventRow.__table__.c, SwitchFailureRow.__table__.c

    def where(channel: ColumnElement, at: ColumnElement) -> ColumnElement[bool]:
        return and_(channel.in_(channels), _in_ranges(at, ranges))

    reply = contacts.first_reply_seconds
    reply_counters = {f"first_reply_le_{le}s": _flag(reply <= le) for le in FIRST_REPLY_BUCKETS}
    started = select(
        *_row(
            _bucket(contacts.started_at, size, dialect),
            contacts.channel,
            contacts_started=literal(1),
            first_reply_sum_seconds=cast(func.coalesce(reply, 0.0), Float),
            first_reply_count=_flag(reply.is_not(None)),
            first_reply_le_inf=_flag(reply.is_not(None)),
            **reply_counters,
        )
    ).where(where(contacts.channel, contacts.started_at))
    ended = select(
        *_row(
            _bucket(contacts.ended_at, size, dialect),
            contacts.channel,
            contacts_ended=literal(1),
            resolved=_flag(contacts.outcome == "resolved"),
            unresolved=_flag(contacts.outcome == "unresolved"),
            abandoned=_flag(contacts.outcome == "abandoned"),
            transferred=_flag(contacts.outcome == "transferred"),
        )
    ).where(contacts.ended_at.is_not(None), where(contacts.channel, contacts.ended_at))
    final_sessions = select(
        *_row(
            _bucket(sessions.started_at, size, dialect),
            sessions.first_channel,
            fcr_denominator=literal(1),
            fcr_numerator=_flag(sessions.first_contact_resolved),
            nps_promoters=_flag(sessions.nps_score >= 9),
            nps_passives=_flag(sessions.nps_score.between(7, 8)),
            nps_detractors=_flag(sessions.nps_score <= 6),
        )
    ).where(sessions.status == SESSION_FINAL, where(sessions.first_channel, sessions.started_at))
    sla_fired = select(
        *_row(
            _bucket(sla.fired_at, size, dialect),
            sla.channel,
            sla_warnings=_flag(sla.kind == SLA_WARNING),
            sla_breaches=_flag(sla.kind == SLA_BREACH),
        )
    ).where(sla.kind.in_((SLA_WARNING, SLA_BREACH)), where(sla.channel, sla.fired_at))
    switch_out = select(
        *_row(
            _bucket(switches.occurred_at, size, dialect),
            switches.from_channel,
            switch_failures_out=literal(1),
        )
    ).where(where(switches.from_channel, switches.occurred_at))
    switch_in = select(
        *_row(
            _bucket(switches.occurred_at, size, dialect),
            switches.to_channel,
            switch_failures_in=literal(1),
        )
    ).where(where(switches.to_channel, switches.occurred_at))

    rows = union_all(started, ended, final_sessions, sla_fired, switch_out, switch_in).subquery()
    return select(
        literal(size).label("bucket_size"),
        rows.c.bucket_start,
        rows.c.channel,
        *(func.sum(rows.c[name]).label(name) for name in STATS_COUNTERS),
    ).group_by(rows.c.bucket_start, rows.c.channel)
