"""Output records -> table rows, one tuple per natural key (pure, no I/O).

Every builder returns the row as a tuple in its table's column order, which is
what PostgreSQL's COPY takes directly: building an intermediate dict per record
and reading it back column by column cost about a third of a batch's Python
time. :func:`rows_by_table` gives the same rows as dicts for SQLite and the
in-memory double.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table

from pipeline.core.records import BOUNCED, FALSE_RESOLUTION, SESSION_SUPERSEDED, SWITCH_FAILURE
from pipeline.errors import SinkRejectedError
from pipeline.sink.identity_links import COLUMNS as IDENTITY_LINK_COLUMNS
from pipeline.sink.identity_links import OUTPUT_NAME as IDENTITY_LINK
from pipeline.sink.identity_links import (
    IdentityLinkRow,
    identity_link_row,
    pseudonymise_event_identifier,
    pseudonymise_identity,
)
from pipeline.sink.models import (
    ROW_WINS,
    Base,
    BounceSignalRow,
    ContactRow,
    FalseResolutionRow,
    FeedbackRow,
    LateEventRow,
    NeedRow,
    SessionRow,
    SlaEventRow,
    SwitchFailureRow,
    ms_to_utc,
)
from pipeline.sink.pseudonym import Pseudonymizer

Record = Mapping[str, Any]
Batch = Sequence[tuple[str, Record]]
Row = tuple[Any, ...]
Builder = Callable[[Record, datetime], Row]


def _optional_time(value: int | None) -> datetime | None:
    return None if value is None else ms_to_utc(value)


def _session_row(record: Record, now: datetime) -> Row:
    path = record["channel_path"]
    started, ended = record["started_at"], record["ended_at"]
    return (
        record["session_id"],
        record["customer_id"],
        record["status"],
        record.get("superseded_by"),
        ms_to_utc(started),
        ms_to_utc(ended),
        (ended - started) / 1000,
        ">".join(path),
        path[0] if path else "",
        path[-1] if path else "",
        record["contacts"],
        record["events"],
        record["channel_switches"],
        # NULL while undecided (session v3); a v1/v2 record's figure is decided.
        None if record.get("fcr_undecided") else bool(record["first_contact_resolved"]),
        bool(record["resolved_at_end"]),
        record["switch_failures"],
        record["sla_breaches"],
        record.get("nps_score"),
        record.get("version", 0),
        now,
        bool(record.get("first_outcome_resolved", False)),
        record.get("nps_average"),
    )


def _contact_row(record: Record, now: datetime) -> Row:
    return (
        record["contact_id"],
        record["customer_id"],
        record.get("session_id"),
        record["channel"],
        ms_to_utc(record["started_at"]),
        _optional_time(record.get("ended_at")),
        record.get("outcome"),
        record.get("topic"),
        record.get("first_reply_seconds"),
        record.get("first_reply_business_seconds"),
        bool(record["breached"]),
        record["events"],
        record.get("version", 0),
        record.get("first_contact_resolved"),
        bool(record.get("bot_only", False)),
        record.get("contained"),
        record.get("queue"),
        record.get("team"),
        record.get("service_level"),
        bool(record.get("settled", False)),
        _optional_time(record.get("identified_at")),
    )


def _feedback_rows(record: Record) -> list[Row]:
    """The feedback rows a journey record carries (none for a superseded journey:
    its scores are the survivor's now)."""
    if record["status"] == SESSION_SUPERSEDED:
        return []
    session_id, customer_id = record["session_id"], record["customer_id"]
    return [
        (
            item["feedback_id"],
            item["contact_id"],
            session_id,
            customer_id,
            item["channel"],
            item["kind"],
            item["score"],
            ms_to_utc(item["given_at"]),
        )
        for item in record.get("feedback", ())
    ]


def _sla_row(record: Record, now: datetime) -> Row:
    return (
        record["sla_event_id"],
        record["kind"],
        record["customer_id"],
        record["contact_id"],
        record["channel"],
        record["policy"],
        record["metric"],
        ms_to_utc(record["clock_started_at"]),
        ms_to_utc(record["deadline"]),
        record["target_seconds"],
        record["calendar"],
        ms_to_utc(record["fired_at"]),
        _optional_time(record.get("replied_at")),
        record.get("overrun_seconds"),
        record.get("policy_version"),
        record.get("queue"),
        record.get("team"),
        _optional_time(record.get("identified_at")),
    )


def _signal_row(record: Record, now: datetime) -> Row:
    return (
        record["signal_id"],
        record["customer_id"],
        record["from_contact_id"],
        record["from_channel"],
        record.get("from_outcome"),
        record["to_contact_id"],
        record["to_channel"],
        record["gap_seconds"],
        record.get("topic"),
        ms_to_utc(record["occurred_at"]),
    )


def _need_row(record: Record, now: datetime) -> Row:
    channels = record["channels"]
    return (
        record["need_id"],
        record["customer_id"],
        record.get("topic"),
        record["status"],
        ms_to_utc(record["opened_at"]),
        ms_to_utc(record["last_contact_at"]),
        _optional_time(record.get("closed_at")),
        record["contacts"],
        ">".join(channels),
        record["first_channel"],
        len(set(channels)),
        record["channel_switches"],
        record["switch_failures"],
        record.get("first_contact_resolved"),
        record["resolved"],
        record["customer_wait_seconds"],
        record.get("handling_seconds"),
        record["sla_breaches"],
        record["feedback_count"],
        record.get("feedback_average"),
        record["bounced"],
        _optional_time(record.get("bounced_at")),
        record["version"],
        # contact_ids lists the need's contacts by start time.
        next(iter(record.get("contact_ids") or ()), None),
    )


def _late_row(record: Record, now: datetime) -> Row:
    return (
        record["event_id"],
        record["customer_id"],
        ms_to_utc(record["occurred_at"]),
        ms_to_utc(record["clock_at"]),
        record["reason"],
        dict(record["event"]),
    )


# The tuples above are positional: their order is checked against the models once.
_BUILDER_COLUMNS: dict[Builder, tuple[str, ...]] = {
    _session_row: (
        "session_id", "customer_id", "status", "superseded_by", "started_at", "ended_at",
        "duration_seconds", "channel_path", "first_channel", "last_channel", "contacts",
        "events", "channel_switches", "first_contact_resolved", "resolved_at_end",
        "switch_failures", "sla_breaches", "nps_score", "version", "updated_at",
        "first_outcome_resolved", "nps_average",
    ),
    _contact_row: (
        "contact_id", "customer_id", "session_id", "channel", "started_at", "ended_at",
        "outcome", "topic", "first_reply_seconds", "first_reply_business_seconds",
        "breached", "events", "version", "first_contact_resolved", "bot_only", "contained",
        "queue", "team", "service_level", "settled", "identified_at",
    ),
    _sla_row: (
        "sla_event_id", "kind", "customer_id", "contact_id", "channel", "policy", "metric",
        "clock_started_at", "deadline", "target_seconds", "calendar", "fired_at",
        "replied_at", "overrun_seconds", "policy_version", "queue", "team", "identified_at",
    ),
    _signal_row: (
        "signal_id", "customer_id", "from_contact_id", "from_channel", "from_outcome",
        "to_contact_id", "to_channel", "gap_seconds", "topic", "occurred_at",
    ),
    _late_row: ("event_id", "customer_id", "occurred_at", "clock_at", "reason", "event_json"),
    _need_row: (
        "need_id", "customer_id", "topic", "status", "opened_at", "last_contact_at",
        "closed_at", "contacts", "channel_path", "first_channel", "channels",
        "channel_switches", "switch_failures", "first_contact_resolved", "resolved",
        "customer_wait_seconds", "handling_seconds", "sla_breaches", "feedback_count",
        "feedback_average", "bounced", "bounced_at", "version", "first_contact_id",
    ),
}  # fmt: skip

_BUILDER_COLUMNS[identity_link_row] = IDENTITY_LINK_COLUMNS  # issue 16

_BUILDERS: dict[str, tuple[Table, Builder]] = {
    "session": (SessionRow.__table__, _session_row),
    "contact": (ContactRow.__table__, _contact_row),
    "sla_event": (SlaEventRow.__table__, _sla_row),
    "late_event": (LateEventRow.__table__, _late_row),
    "need": (NeedRow.__table__, _need_row),
    IDENTITY_LINK: (IdentityLinkRow.__table__, identity_link_row),
}
_SIGNAL_TABLES: dict[str, Table] = {
    SWITCH_FAILURE: SwitchFailureRow.__table__,
    FALSE_RESOLUTION: FalseResolutionRow.__table__,
    BOUNCED: BounceSignalRow.__table__,
}
_COLUMNS_BY_TABLE: dict[str, tuple[str, ...]] = {
    table.name: _BUILDER_COLUMNS[build]
    for table, build in (*_BUILDERS.values(), *((t, _signal_row) for t in _SIGNAL_TABLES.values()))
}
_FEEDBACK_TABLE: Table = FeedbackRow.__table__
_COLUMNS_BY_TABLE[_FEEDBACK_TABLE.name] = (
    "feedback_id", "contact_id", "session_id", "customer_id", "channel", "kind", "score",
    "given_at",
)  # fmt: skip
for _name, _columns in _COLUMNS_BY_TABLE.items():
    assert tuple(Base.metadata.tables[_name].columns.keys()) == _columns, _name

_VERSIONED_COLUMNS = {
    "sessions": _BUILDER_COLUMNS[_session_row],
    "contacts": _BUILDER_COLUMNS[_contact_row],
    "needs": _BUILDER_COLUMNS[_need_row],
    "sla_events": _BUILDER_COLUMNS[_sla_row],
}


def _pseudonymise(record: Record, pseudonymizer: Pseudonymizer | None) -> Record:
    if pseudonymizer is None:
        return record
    record = dict(record)
    record["customer_id"] = pseudonymizer.customer(record["customer_id"])
    if isinstance(record.get("event"), Mapping) and "customer_id" in record["event"]:
        record["event"] = {**record["event"], "customer_id": record["customer_id"]}
    if isinstance(record.get("event"), Mapping):
        # An event released through identity keeps its identifier (a phone number).
        record["event"] = pseudonymise_event_identifier(record["event"], pseudonymizer)
    return record


def _replaces(table_name: str, new: Row, old: Row) -> bool:
    columns = _VERSIONED_COLUMNS[table_name]
    named = [dict(zip(columns, row, strict=True)) for row in (new, old)]
    return ROW_WINS[table_name](*named)


def tuples_by_table(
    batch: Batch, pseudonymizer: Pseudonymizer | None = None, now: datetime | None = None
) -> dict[str, dict[Any, Row]]:
    """Group a batch into table name -> primary key -> row tuple (table column order).

    The last record per key wins, except for versioned rows (sessions, contacts),
    where :data:`~pipeline.sink.models.ROW_WINS` decides. Raises SinkRejectedError
    for an output name or signal kind the store does not know, or a record missing
    a field or holding a value no row can take.
    """
    now = now or datetime.now(UTC)
    tables: dict[str, dict[Any, Row]] = {}
    for output_name, record in batch:
        if output_name == "journey_signal":
            table = _SIGNAL_TABLES.get(record.get("kind", ""))
            if table is None:
                raise SinkRejectedError(f"journey_signal kind {record.get('kind')!r} is unknown")
            build: Builder = _signal_row
        elif output_name in _BUILDERS:
            table, build = _BUILDERS[output_name]
        else:
            raise SinkRejectedError(f"output {output_name!r} has no table")
        feedback: list[Row] = []
        try:
            if pseudonymizer is not None:
                record = (
                    pseudonymise_identity(record, pseudonymizer)
                    if output_name == IDENTITY_LINK
                    else _pseudonymise(record, pseudonymizer)
                )
            row = build(record, now)
            if output_name == "session":
                feedback = _feedback_rows(record)
        # OverflowError: an epoch-ms stamp beyond the datetime range.
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise SinkRejectedError(f"{output_name} record cannot be stored: {exc!r}") from exc
        if feedback:
            # Every record of the journey carries all its scores: the last one wins.
            stored = tables.setdefault(_FEEDBACK_TABLE.name, {})
            for item in feedback:
                stored[item[0]] = item
        rows = tables.get(table.name)
        if rows is None:
            rows = tables[table.name] = {}
        # Every primary key is the first column.
        key = row[0]
        if (
            key in rows
            and table.name in _VERSIONED_COLUMNS
            and not _replaces(table.name, row, rows[key])
        ):
            continue
        rows[key] = row
    return tables


def rows_by_table(
    batch: Batch, pseudonymizer: Pseudonymizer | None = None, now: datetime | None = None
) -> dict[str, dict[Any, dict[str, Any]]]:
    """:func:`tuples_by_table` with every row as a column name -> value dict."""
    return {
        name: {key: dict(zip(columns, row, strict=True)) for key, row in rows.items()}
        for name, rows in tuples_by_table(batch, pseudonymizer, now).items()
        for columns in (_COLUMNS_BY_TABLE[name],)
    }
