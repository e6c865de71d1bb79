"""SqlStore on SQLite: idempotency, session precedence, derived channel_stats, errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from pipeline.core.records import ContactSummary, JourneySignal, LateEvent, SessionRecord, SlaEvent
from pipeline.errors import SinkError, SinkRejectedError, SinkUnavailableError
from pipeline.sink.migrate import upgrade
from pipeline.sink.pseudonym import Pseudonymizer
from pipeline.sink.store import SqlStore, classify_error, dump_tables

T0 = 1_772_438_400_000  # 2026-03-02T08:00:00Z
MINUTE = 60_000


def session(status: str = "final", version: int = 1, **overrides: Any) -> tuple[str, dict]:
    fields: dict[str, Any] = {
        "session_id": "s1", "customer_id": "cust-1", "status": status,
        "started_at": T0, "ended_at": T0 + 10 * MINUTE, "channel_path": ["chat", "phone"],
        "contacts": 2, "events": 9, "channel_switches": 1, "first_contact_resolved": False,
        "resolved_at_end": True, "switch_failures": 1, "sla_breaches": 1, "nps_score": 9,
        "contact_ids": ["c1", "c2"], "version": version,
    }  # fmt: skip
    fields.update(overrides)
    return "session", SessionRecord(**fields).to_dict()


def contact(contact_id: str, channel: str, started: int, outcome: str, reply: float | None):
    record = ContactSummary(
        contact_id, "cust-1", channel, "s1", started, started + 2 * MINUTE, outcome, "loan",
        reply, reply, False, 5,
    )  # fmt: skip
    return "contact", record.to_dict()


def sample_batch() -> list[tuple[str, dict]]:
    breach = SlaEvent(
        "c1:chat_first_reply:first_reply:0:breach", "breach", "cust-1", "c1", "chat",
        "chat_first_reply", "first_reply", T0, T0 + MINUTE, 60.0, "24x7", T0 + MINUTE,
    )  # fmt: skip
    switch = JourneySignal(
        "c1>c2:switch_failure", "switch_failure", "cust-1", "c1", "chat", "unresolved",
        "c2", "phone", 90.0, "loan", T0 + 3 * MINUTE + 30_000,
    )  # fmt: skip
    late = LateEvent("e9", "cust-1", T0, T0 + 40 * MINUTE, "session_closed",
                     {"event_id": "e9", "customer_id": "cust-1", "type": "feedback"})  # fmt: skip
    return [
        contact("c1", "chat", T0, "unresolved", 75.0),
        contact("c2", "phone", T0 + 3 * MINUTE + 30_000, "resolved", 20.0),
        ("sla_event", breach.to_dict()),
        ("journey_signal", switch.to_dict()),
        ("late_event", late.to_dict()),
        session(),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    sql_store = SqlStore(f"sqlite:///{tmp_path}/nested/cx.db")
    sql_store.create_schema()
    yield sql_store
    sql_store.dispose()


def nonzero(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if value not in (0, 0.0)}


def test_migrations_create_every_table_on_a_fresh_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    upgrade(url)
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert tables == {
        "alembic_version", "bounce_signals", "channel_stats", "channel_switch_failures",
        "contacts", "false_resolutions", "feedback", "late_events", "needs", "sessions",
        "sla_events", "identity_links",
    }  # fmt: skip


def test_writing_a_batch_twice_leaves_every_table_identical(store: SqlStore) -> None:
    store.write(sample_batch())
    first = dump_tables(store.url)
    store.write(sample_batch())
    assert dump_tables(store.url) == first
    assert [len(first[name]) for name in ("sessions", "contacts", "sla_events")] == [1, 2, 1]


def test_open_session_after_final_does_not_overwrite_it(store: SqlStore) -> None:
    store.write([session("final", version=3)])
    store.write([session("open", version=7, contacts=5)])
    [row] = dump_tables(store.url)["sessions"]
    assert (row["status"], row["version"], row["contacts"]) == ("final", 3, 2)


def test_higher_version_wins_and_superseded_beats_open(store: SqlStore) -> None:
    store.write([session("open", version=2, contacts=2), session("open", version=1, contacts=1)])
    assert dump_tables(store.url)["sessions"][0]["contacts"] == 2
    store.write([session("superseded", version=1, superseded_by="s0")])
    [row] = dump_tables(store.url)["sessions"]
    assert (row["status"], row["superseded_by"]) == ("superseded", "s0")


def test_channel_stats_are_derived_from_a_small_batch(store: SqlStore) -> None:
    store.write(sample_batch())
    stats = {
        (row["bucket_size"], row["bucket_start"][11:16], row["channel"]): nonzero(row)
        for row in dump_tables(store.url)["channel_stats"]
    }
    replies = {f"first_reply_le_{le}s": 1 for le in (180, 600, 3600, 7200, 28800, 86400, 172800)}
    assert stats[("hour", "08:00", "chat")] == {
        "bucket_size": "hour", "bucket_start": "2026-03-02T08:00:00+00:00", "channel": "chat",
        "contacts_started": 1, "contacts_ended": 1, "unresolved": 1, "fcr_denominator": 1,
        "sla_breaches": 1, "switch_failures_out": 1, "first_reply_sum_seconds": 75.0,
        "first_reply_count": 1, "first_reply_le_inf": 1, "nps_promoters": 1, **replies,
    }  # fmt: skip
    assert stats[("hour", "08:00", "phone")]["switch_failures_in"] == 1
    assert stats[("hour", "08:00", "phone")]["first_reply_le_30s"] == 1
    assert stats[("minute", "08:01", "chat")] == {
        "bucket_size": "minute", "bucket_start": "2026-03-02T08:01:00+00:00", "channel": "chat",
        "sla_breaches": 1,
    }  # fmt: skip
    assert sorted(stats) == [
        ("hour", "08:00", "chat"), ("hour", "08:00", "phone"),
        ("minute", "08:00", "chat"), ("minute", "08:01", "chat"), ("minute", "08:02", "chat"),
        ("minute", "08:03", "chat"), ("minute", "08:03", "phone"), ("minute", "08:05", "phone"),
    ]  # fmt: skip


def test_channel_stats_follow_a_session_whose_start_moved(store: SqlStore) -> None:
    """The old bucket is recomputed too, so nothing is left behind there."""
    store.write([session("final", version=1)])
    store.write([session("final", version=2, started_at=T0 - 2 * 3_600_000)])
    hours = [
        (row["bucket_start"], row["fcr_denominator"])
        for row in dump_tables(store.url)["channel_stats"]
        if row["bucket_size"] == "hour"
    ]
    assert hours == [("2026-03-02T06:00:00+00:00", 1)]


def test_pseudonymisation_replaces_customer_ids_everywhere(tmp_path: Path) -> None:
    pseudonymizer = Pseudonymizer(b"test-key")
    sql_store = SqlStore(f"sqlite:///{tmp_path}/p.db", pseudonymizer=pseudonymizer)
    sql_store.create_schema()
    sql_store.write(sample_batch())
    sql_store.dispose()
    dump = dump_tables(sql_store.url)
    expected = pseudonymizer.customer("cust-1")
    ids = {row["customer_id"] for rows in dump.values() for row in rows if "customer_id" in row}
    assert ids == {expected}
    assert dump["late_events"][0]["event_json"]["customer_id"] == expected
    assert "cust-1" not in repr(dump)


def test_unknown_output_name_is_rejected_as_sink_error(store: SqlStore) -> None:
    with pytest.raises(SinkRejectedError, match="no table"):
        store.write([("weather", {})])


def test_record_missing_a_field_is_rejected(store: SqlStore) -> None:
    name, record = contact("c1", "chat", T0, "resolved", 5.0)
    del record["customer_id"]
    with pytest.raises(SinkRejectedError, match="contact record cannot be stored"):
        store.write([(name, record)])


def test_integer_sqlite_cannot_bind_is_rejected_and_stores_nothing(store: SqlStore) -> None:
    """sqlite3 raises a bare OverflowError for an int over 2**63 - 1: the record
    is at fault, so it must not look like an outage (which would be retried forever)."""
    name, record = contact("c1", "chat", T0, "resolved", 5.0)
    good = contact("c2", "chat", T0, "resolved", 5.0)
    with pytest.raises(SinkRejectedError, match="OverflowError"):
        store.write([good, (name, {**record, "events": 2**63})])
    assert dump_tables(store.url)["contacts"] == []


def test_timestamp_beyond_the_datetime_range_is_rejected(store: SqlStore) -> None:
    name, record = contact("c1", "chat", T0, "resolved", 5.0)
    with pytest.raises(SinkRejectedError, match="OverflowError"):
        store.write([(name, {**record, "started_at": 2**62})])


def test_locked_sqlite_database_is_unavailable_not_rejected(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/locked.db"
    SqlStore(url).create_schema()
    # A short busy timeout, so the test does not wait out sqlite3's default 5 s.
    locked = SqlStore(f"{url}?timeout=0.1")
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(SinkUnavailableError, match="locked"):
            locked.write([session()])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    locked.write([session()])
    locked.dispose()
    assert [row["session_id"] for row in dump_tables(url)["sessions"]] == ["s1"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (psycopg.errors.CharacterNotInRepertoire("invalid byte sequence: 0x00"), SinkRejectedError),
        (psycopg.errors.NumericValueOutOfRange("integer out of range"), SinkRejectedError),
        (psycopg.errors.StringDataRightTruncation("value too long"), SinkRejectedError),
        (psycopg.errors.NotNullViolation("null value in column"), SinkRejectedError),
        (psycopg.errors.CheckViolation("violates check constraint"), SinkRejectedError),
        (psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"), SinkRejectedError),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
         SinkRejectedError),
        (OverflowError("int too big to convert"), SinkRejectedError),
        (ValueError("surrogates not allowed"), SinkRejectedError),
        (psycopg.OperationalError("connection refused"), SinkUnavailableError),
        (psycopg.errors.AdminShutdown("terminating connection"), SinkUnavailableError),
        (psycopg.errors.DeadlockDetected("deadlock detected"), SinkUnavailableError),
        (psycopg.errors.LockNotAvailable("could not obtain lock"), SinkUnavailableError),
        (psycopg.errors.DiskFull("could not extend file"), SinkUnavailableError),
        (psycopg.InterfaceError("the connection is closed"), SinkUnavailableError),
        (psycopg.errors.InsufficientPrivilege("permission denied"), SinkError),
        (psycopg.errors.UndefinedTable("relation does not exist"), SinkError),
    ],
)  # fmt: skip
def test_driver_errors_map_to_rejected_unavailable_or_plain_sink_errors(
    error: Exception, expected: type[SinkError]
) -> None:
    """Rejected: this data (dead-letter it). Unavailable: the database (retry).
    Plain SinkError: neither (schema, permissions): retried, never dead-lettered."""
    assert classify_error(error) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (sqlite3.OperationalError("database is locked"), SinkUnavailableError),
        (sqlite3.OperationalError("disk I/O error"), SinkUnavailableError),
        (sqlite3.OperationalError("no such table: contacts"), SinkError),
        (sqlite3.IntegrityError("NOT NULL constraint failed: contacts.customer_id"),
         SinkRejectedError),
        (sqlite3.DataError("string or blob too big"), SinkRejectedError),
        (sqlite3.ProgrammingError("Error binding parameter 8: type 'dict' is not supported"),
         SinkRejectedError),
        (OverflowError("Python int too large to convert to SQLite INTEGER"), SinkRejectedError),
    ],
)  # fmt: skip
def test_sqlite_errors_map_to_rejected_unavailable_or_plain_sink_errors(
    error: Exception, expected: type[SinkError]
) -> None:
    assert classify_error(error) is expected


def test_unreachable_database_raises_sink_unavailable() -> None:
    closed_port = SqlStore("postgresql+psycopg://postgres@127.0.0.1:9/cxstream")
    with pytest.raises(SinkUnavailableError):
        closed_port.write([session()])
    closed_port.dispose()
