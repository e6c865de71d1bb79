"""SQL tables of the sink (SQLAlchemy 2 typed models) and the session precedence rule.

Natural keys of the output records are the primary keys, so every write is an
idempotent upsert. Timestamps are ``DateTime(timezone=True)`` holding UTC.
``channel_stats`` is derived from the other tables (see :mod:`pipeline.sink.stats`);
nothing ever increments it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    false,
    or_,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pipeline.core.records import SESSION_OPEN, SESSION_SUPERSEDED

# Stable constraint names so migrations are the same on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable, compact); SQLite stores JSON text.
JsonType = JSON().with_variant(JSONB(), "postgresql")

# Upper bounds (seconds) of the cumulative first-reply buckets of channel_stats;
# they span the chat (60 s) to web message (2 banking days) targets.
FIRST_REPLY_BUCKETS: tuple[int, ...] = (30, 60, 180, 600, 3600, 7200, 28800, 86400, 172800)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_to_utc(epoch_ms: int) -> datetime:
    """Epoch milliseconds -> aware UTC datetime, exactly (no float rounding)."""
    # Positional (days, seconds, microseconds, milliseconds): the keyword form
    # costs twice as much, and the sink converts several stamps per record.
    return _EPOCH + timedelta(0, 0, 0, epoch_ms)


def utc_to_ms(value: datetime) -> int:
    """A datetime read back from SQL -> epoch ms; naive values (SQLite) are UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _utc() -> Any:
    return DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # DeclarativeBase types __table__ as FromClause because a class may be mapped
    # to a join or a select; every model here maps one Table, so say so.
    __table__: ClassVar[Table]


class SessionRow(Base):
    __tablename__ = "sessions"

    session_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16))
    superseded_by: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(_utc())
    ended_at: Mapped[datetime] = mapped_column(_utc())
    duration_seconds: Mapped[float] = mapped_column(Float)
    channel_path: Mapped[str] = mapped_column(Text)
    first_channel: Mapped[str] = mapped_column(String(64))
    last_channel: Mapped[str] = mapped_column(String(64))
    contacts: Mapped[int] = mapped_column(Integer)
    events: Mapped[int] = mapped_column(Integer)
    channel_switches: Mapped[int] = mapped_column(Integer)
    # NULL while the first contact's need is undecided, or the journey has no contact.
    first_contact_resolved: Mapped[bool | None] = mapped_column(Boolean)
    resolved_at_end: Mapped[bool] = mapped_column(Boolean)
    switch_failures: Mapped[int] = mapped_column(Integer)
    sla_breaches: Mapped[int] = mapped_column(Integer)
    nps_score: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(_utc())
    # Migration 0003: the first contact's own outcome, the mean NPS answer.
    first_outcome_resolved: Mapped[bool | None] = mapped_column(Boolean)
    nps_average: Mapped[float | None] = mapped_column(Float)

    # channel_stats recomputation reads final sessions by first channel and start.
    __table_args__ = (Index(None, "first_channel", "started_at"),)


class ContactRow(Base):
    __tablename__ = "contacts"

    contact_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    session_id: Mapped[str | None] = mapped_column(String(200), index=True)
    channel: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(_utc())
    ended_at: Mapped[datetime | None] = mapped_column(_utc())
    outcome: Mapped[str | None] = mapped_column(String(32))
    topic: Mapped[str | None] = mapped_column(String(200))
    first_reply_seconds: Mapped[float | None] = mapped_column(Float)
    first_reply_business_seconds: Mapped[float | None] = mapped_column(Float)
    breached: Mapped[bool] = mapped_column(Boolean)
    events: Mapped[int] = mapped_column(Integer)
    # The summary's version: a later summary of the contact replaces the row, a
    # redelivered older one does not (contact_wins). 0: written before it existed.
    version: Mapped[int] = mapped_column(Integer, server_default="0")
    # Migration 0003: FCR by need and bot containment (NULL: not known yet).
    first_contact_resolved: Mapped[bool | None] = mapped_column(Boolean)
    bot_only: Mapped[bool] = mapped_column(Boolean, server_default=false())
    contained: Mapped[bool | None] = mapped_column(Boolean)
    # Migration 0005: the latest queue and team the contact's events named.
    queue: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(200))
    # Migration 0007: the settled service level (answered_in_target, answered_late,
    # abandoned; NULL: not applicable or not settled) and whether it is settled.
    service_level: Mapped[str | None] = mapped_column(String(32))
    settled: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Migration 0009: when identity identified the customer the contact came
    # through (issue 16); NULL: it came with its customer id.
    identified_at: Mapped[datetime | None] = mapped_column(_utc())

    __table_args__ = (
        Index(None, "channel", "started_at"),
        Index(None, "channel", "ended_at"),
    )


class SlaEventRow(Base):
    __tablename__ = "sla_events"

    sla_event_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    contact_id: Mapped[str] = mapped_column(String(200), index=True)
    channel: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(32))
    clock_started_at: Mapped[datetime] = mapped_column(_utc())
    deadline: Mapped[datetime] = mapped_column(_utc())
    target_seconds: Mapped[float] = mapped_column(Float)
    calendar: Mapped[str] = mapped_column(String(64))
    fired_at: Mapped[datetime] = mapped_column(_utc())
    replied_at: Mapped[datetime | None] = mapped_column(_utc())
    overrun_seconds: Mapped[float | None] = mapped_column(Float)
    # Migration 0005: the policy version the clock started under (NULL: written
    # before versions), the contact's queue and team.
    policy_version: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(200))
    # Migration 0010 (issue 16): the contact's identified_at, which orders two
    # customers' records under one id (sla_event_wins). NULL: none, or older rows.
    identified_at: Mapped[datetime | None] = mapped_column(_utc())

    __table_args__ = (Index(None, "channel", "fired_at"),)


class _SignalColumns:
    """Columns shared by both journey-signal tables (one row per JourneySignal)."""

    signal_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    from_contact_id: Mapped[str] = mapped_column(String(200))
    from_channel: Mapped[str] = mapped_column(String(64))
    from_outcome: Mapped[str | None] = mapped_column(String(32))
    to_contact_id: Mapped[str] = mapped_column(String(200))
    to_channel: Mapped[str] = mapped_column(String(64))
    gap_seconds: Mapped[float] = mapped_column(Float)
    topic: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(_utc())


class SwitchFailureRow(_SignalColumns, Base):
    __tablename__ = "channel_switch_failures"
    __table_args__ = (
        Index(None, "from_channel", "occurred_at"),
        Index(None, "to_channel", "occurred_at"),
    )


class FalseResolutionRow(_SignalColumns, Base):
    __tablename__ = "false_resolutions"


class BounceSignalRow(_SignalColumns, Base):
    """A need reached the bounce threshold (``bounced`` journey signals, migration
    0004): from its first contact to the contact that crossed the threshold."""

    __tablename__ = "bounce_signals"


class NeedRow(Base):
    """A customer's need (``NeedRecord``, migration 0004); the newest version wins."""

    __tablename__ = "needs"

    need_id: Mapped[str] = mapped_column(String(400), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    topic: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime] = mapped_column(_utc())
    last_contact_at: Mapped[datetime] = mapped_column(_utc())
    closed_at: Mapped[datetime | None] = mapped_column(_utc())
    contacts: Mapped[int] = mapped_column(Integer)
    channel_path: Mapped[str] = mapped_column(Text)
    first_channel: Mapped[str] = mapped_column(String(64))
    channels: Mapped[int] = mapped_column(Integer)
    channel_switches: Mapped[int] = mapped_column(Integer)
    switch_failures: Mapped[int] = mapped_column(Integer)
    # NULL while the first contact's FCR is undecided.
    first_contact_resolved: Mapped[bool | None] = mapped_column(Boolean)
    resolved: Mapped[bool] = mapped_column(Boolean)
    customer_wait_seconds: Mapped[float] = mapped_column(Float)
    handling_seconds: Mapped[float | None] = mapped_column(Float)
    sla_breaches: Mapped[int] = mapped_column(Integer)
    feedback_count: Mapped[int] = mapped_column(Integer)
    feedback_average: Mapped[float | None] = mapped_column(Float)
    bounced: Mapped[bool] = mapped_column(Boolean)
    bounced_at: Mapped[datetime | None] = mapped_column(_utc())
    version: Mapped[int] = mapped_column(Integer)
    # Migration 0006: the need's first contact (by start time); the view
    # need_queue_team gives the need that contact's queue and team.
    first_contact_id: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (Index(None, "first_channel", "opened_at"), Index(None, "topic", "opened_at"))


class FeedbackRow(Base):
    """One score a customer gave (one feedback event), with the contact it is about
    and the journey it was given in (migration 0003)."""

    __tablename__ = "feedback"

    feedback_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    contact_id: Mapped[str] = mapped_column(String(200), index=True)
    session_id: Mapped[str] = mapped_column(String(200), index=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    channel: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    score: Mapped[int] = mapped_column(Integer)
    given_at: Mapped[datetime] = mapped_column(_utc())


class LateEventRow(Base):
    __tablename__ = "late_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(200), index=True)
    occurred_at: Mapped[datetime] = mapped_column(_utc())
    clock_at: Mapped[datetime] = mapped_column(_utc())
    reason: Mapped[str] = mapped_column(String(200))
    event_json: Mapped[dict[str, Any]] = mapped_column(JsonType)


class ChannelStatsRow(Base):
    """Per channel and minute/hour bucket counters; see docs/sql.md for the timestamps."""

    __tablename__ = "channel_stats"

    bucket_size: Mapped[str] = mapped_column(String(8), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(_utc(), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    contacts_started: Mapped[int] = mapped_column(Integer, default=0)
    contacts_ended: Mapped[int] = mapped_column(Integer, default=0)
    resolved: Mapped[int] = mapped_column(Integer, default=0)
    unresolved: Mapped[int] = mapped_column(Integer, default=0)
    abandoned: Mapped[int] = mapped_column(Integer, default=0)
    transferred: Mapped[int] = mapped_column(Integer, default=0)
    fcr_numerator: Mapped[int] = mapped_column(Integer, default=0)
    fcr_denominator: Mapped[int] = mapped_column(Integer, default=0)
    sla_warnings: Mapped[int] = mapped_column(Integer, default=0)
    sla_breaches: Mapped[int] = mapped_column(Integer, default=0)
    switch_failures_out: Mapped[int] = mapped_column(Integer, default=0)
    switch_failures_in: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_sum_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    first_reply_count: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_30s: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_60s: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_180s: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_600s: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_3600s: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_7200s: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_28800s: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_86400s: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_172800s: Mapped[int] = mapped_column(Integer, default=0)
    first_reply_le_inf: Mapped[int] = mapped_column(Integer, default=0)
    nps_promoters: Mapped[int] = mapped_column(Integer, default=0)
    nps_passives: Mapped[int] = mapped_column(Integer, default=0)
    nps_detractors: Mapped[int] = mapped_column(Integer, default=0)


STATS_COUNTERS: tuple[str, ...] = tuple(
    column.name
    for column in ChannelStatsRow.__table__.columns
    if column.name not in ("bucket_size", "bucket_start", "channel")
)


def session_wins(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """True when session record ``new`` may replace ``old`` (same session_id).

    An open record never replaces a final or superseded one; a closed record
    always replaces an open one; otherwise the higher ``version`` wins, and on
    equal versions ``superseded`` beats ``final`` (a redelivery of the same
    record replaces itself, which is harmless). :func:`pipeline.sink.store` applies
    the same rule in SQL across batches.
    """
    new_closed = new["status"] != SESSION_OPEN
    old_closed = old["status"] != SESSION_OPEN
    if new_closed != old_closed:
        return new_closed
    if new["version"] != old["version"]:
        return bool(new["version"] > old["version"])
    return bool(new["status"] == old["status"] or new["status"] == SESSION_SUPERSEDED)


def session_wins_sql(current: Any, excluded: Any) -> Any:
    """SQL form of ``session_wins(excluded, current)`` for ``ON CONFLICT ... WHERE``:
    ``current`` is the sessions table, ``excluded`` the proposed row."""
    new_closed = excluded.status != SESSION_OPEN
    old_closed = current.c.status != SESSION_OPEN
    return or_(
        and_(new_closed, current.c.status == SESSION_OPEN),
        and_(
            new_closed == old_closed,
            or_(
                excluded.version > current.c.version,
                and_(
                    excluded.version == current.c.version,
                    or_(
                        excluded.status == current.c.status,
                        excluded.status == SESSION_SUPERSEDED,
                    ),
                ),
            ),
        ),
    )


def version_wins(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """True when row ``new`` may replace ``old`` (same key): the same or a later
    version (a redelivery of the same one is harmless)."""
    return bool(new["version"] >= old["version"])


def version_wins_sql(current: Any, excluded: Any) -> Any:
    """SQL form of ``version_wins(excluded, current)`` for ``ON CONFLICT ... WHERE``."""
    return excluded.version >= current.c.version


def contact_wins(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """True when contact row ``new`` may replace ``old`` (same contact_id): a summary
    of a later version, or of the same version and a link at least as late.

    Equal versions from two customers happen when identity split a contact's events
    between them (its identifier moved to another customer during the contact):
    each sends a summary, in either order. The one of the later link (a larger
    ``identified_at``; none counts as earliest) is kept, whatever order they came
    in. A redelivery of the same summary replaces itself, which is harmless.
    """
    if new["version"] != old["version"]:
        return bool(new["version"] > old["version"])
    new_at, old_at = new.get("identified_at"), old.get("identified_at")
    if old_at is None:
        return True
    return new_at is not None and bool(new_at >= old_at)


def contact_wins_sql(current: Any, excluded: Any) -> Any:
    """SQL form of ``contact_wins(excluded, current)`` for ``ON CONFLICT ... WHERE``."""
    return or_(
        excluded.version > current.c.version,
        and_(
            excluded.version == current.c.version,
            or_(
                current.c.identified_at.is_(None),
                and_(
                    excluded.identified_at.is_not(None),
                    excluded.identified_at >= current.c.identified_at,
                ),
            ),
        ),
    )


def sla_event_wins(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """True when SLA event row ``new`` may replace ``old`` (same sla_event_id): a record
    of the same customer always (a retraction, a completion, a redelivery), another
    customer's only if its ``identified_at`` is at least as late (NULL earliest).

    Two customers send records under one id when identity moved the contact from
    one to the other; the old customer's clock may fire after the new one sent its
    records, and its records are not taken back (the new owner's would be undone).
    The later link's records are kept, whatever order they arrive in.
    """
    if new["customer_id"] == old["customer_id"]:
        return True
    new_at, old_at = new.get("identified_at"), old.get("identified_at")
    if old_at is None:
        return True
    return new_at is not None and bool(new_at >= old_at)


def sla_event_wins_sql(current: Any, excluded: Any) -> Any:
    """SQL form of ``sla_event_wins(excluded, current)`` for ``ON CONFLICT ... WHERE``."""
    return or_(
        excluded.customer_id == current.c.customer_id,
        current.c.identified_at.is_(None),
        and_(
            excluded.identified_at.is_not(None),
            excluded.identified_at >= current.c.identified_at,
        ),
    )


#: Tables whose rows carry a version, with the rule (Python, and SQL for the upsert's
#: ``WHERE``) that says when a new row replaces the stored one; other tables: always.
# A need's records only grow in version (its final record is its last), so the
# later version wins.
# An SLA event row has no version: of two customers', the later link's wins.
ROW_WINS = {
    "sessions": session_wins,
    "contacts": contact_wins,
    "needs": version_wins,
    "sla_events": sla_event_wins,
}
_ROW_WINS_SQL = {
    "sessions": session_wins_sql,
    "contacts": contact_wins_sql,
    "needs": version_wins_sql,
    "sla_events": sla_event_wins_sql,
}


def row_wins_sql(table: Table, excluded: Any) -> Any | None:
    """The upsert's ``WHERE`` of ``table`` (None: a new row always replaces)."""
    rule = _ROW_WINS_SQL.get(table.name)
    return None if rule is None else rule(table, excluded)
