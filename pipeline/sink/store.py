"""The SQL store: idempotent batch upserts of output records (SQLite and PostgreSQL).

The Faust sink agent and the offline replay both call :meth:`SqlStore.write`, so
streaming and replay fill identical tables. Every batch is one transaction:
upserts on natural keys, then the affected ``channel_stats`` rows are derived
again from the base tables (:mod:`pipeline.sink.stats`), so a redelivered or
replayed batch leaves the database exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    event,
    exc,
    make_url,
    select,
)
from sqlalchemy.dialects import sqlite

from pipeline.errors import SinkError, SinkUnavailableError
from pipeline.sink import bulk
from pipeline.sink.migrate import upgrade_connection
from pipeline.sink.models import Base, session_wins_sql
from pipeline.sink.pseudonym import Pseudonymizer
from pipeline.sink.rows import Batch, Record, rows_by_table, tuples_by_table
from pipeline.sink.stats import (
    SOURCES_BY_TABLE,
    Bucket,
    buckets_of,
    recompute_channel_stats,
    table_columns,
)

__all__ = ["Batch", "Record", "Sink", "SqlStore", "WriteResult", "dump_tables", "rows_by_table"]

# Columns left out of dump_tables: they record when we wrote, not what happened,
# so a replayed database legitimately differs there.
VOLATILE_COLUMNS = frozenset({"updated_at"})


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one batch did: records received and rows upserted per table (after
    collapsing repeated keys within the batch)."""

    records: int
    rows: Mapping[str, int] = field(default_factory=dict)


class Sink(Protocol):
    """The seam callers use: the Faust sink agent, the replay, and their tests."""

    def write(self, batch: Batch) -> WriteResult:
        """Store a batch atomically. When it returns, the batch is durable and
        offsets may be committed; if it raises, nothing of the batch is stored."""
        ...

    def close(self) -> None: ...


# -------------------------------------------------------------------- the store


# Keeps IN lists well below driver parameter limits (SQLite: 32766).
_KEY_CHUNK = 5000


class SqlStore:
    """Idempotent batch writer for ``sqlite:///path.db`` and ``postgresql+psycopg://``."""

    def __init__(self, url: str, *, pseudonymizer: Pseudonymizer | None = None) -> None:
        self.url = url
        self._pseudonymizer = pseudonymizer
        self._engine = _create_engine(url)
        self.dialect = self._engine.dialect.name

    def create_schema(self) -> None:
        """Create or upgrade all tables by running the migrations."""
        with self._translate_errors(), self._engine.begin() as conn:
            upgrade_connection(conn)

    def write(self, batch: Batch) -> WriteResult:
        """Upsert a batch in one transaction and re-derive the channel_stats it touches.

        Idempotent: writing the same batch again leaves every table unchanged.
        Raises SinkUnavailableError when the database cannot be reached (retry
        later) and SinkError when it rejects the batch.
        """
        if self.dialect == "postgresql":
            tuples = tuples_by_table(batch, self._pseudonymizer)
            if not tuples:
                return WriteResult(records=0)
            with self._translate_errors(), self._engine.begin() as conn:
                bulk.write(conn, {name: rows.values() for name, rows in tuples.items()})
            return WriteResult(
                records=len(batch), rows={name: len(rows) for name, rows in tuples.items()}
            )
        tables = rows_by_table(batch, self._pseudonymizer)
        if not tables:
            return WriteResult(records=0)
        with self._translate_errors(), self._engine.begin() as conn:
            buckets: set[Bucket] = set()
            for table_name, rows in tables.items():
                table = Base.metadata.tables[table_name]
                if table_name in SOURCES_BY_TABLE:
                    # Old positions too: a row may leave a bucket (a session's
                    # start moved, or it stopped being final).
                    buckets |= buckets_of(table_name, self._stored_rows(conn, table, list(rows)))
                    buckets |= buckets_of(table_name, rows.values())
                self._upsert(conn, table, list(rows.values()))
            recompute_channel_stats(conn, buckets)
        return WriteResult(
            records=len(batch),
            rows={name: len(rows) for name, rows in tables.items()},
        )

    def close(self) -> None:
        self.dispose()

    def dispose(self) -> None:
        """Close all pooled connections (the store may be used again afterwards)."""
        self._engine.dispose()

    def _stored_rows(self, conn: Connection, table: Table, keys: list[str]) -> list[Any]:
        """The stats-relevant columns of the stored rows the upsert may replace."""
        columns = table_columns(table.name)
        key_column = table.primary_key.columns.values()[0]
        selected = [table.c[name] for name in columns]
        rows: list[Any] = []
        for start in range(0, len(keys), _KEY_CHUNK):
            chunk = keys[start : start + _KEY_CHUNK]
            rows.extend(conn.execute(select(*selected).where(key_column.in_(chunk))).mappings())
        return rows

    def _upsert(self, conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        # SQLite runs in-process: executemany of one prepared upsert is already cheap.
        stmt = sqlite.insert(table)
        keys = [column.name for column in table.primary_key.columns]
        updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        where = session_wins_sql(table, stmt.excluded) if table.name == "sessions" else None
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates, where=where)
        conn.execute(stmt, rows)

    def _translate_errors(self) -> _ErrorTranslator:
        return _ErrorTranslator(self.dialect)


class _ErrorTranslator:
    """Context manager turning SQLAlchemy errors into the project's SinkError types."""

    # SQLite reports schema mistakes as OperationalError too; those are not outages.
    _SQLITE_SCHEMA_ERRORS = ("no such table", "no such column", "has no column", "syntax error")

    def __init__(self, dialect: str) -> None:
        self._dialect = dialect

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, error: BaseException | None, tb: Any) -> None:
        if isinstance(error, psycopg.Error):
            # The PostgreSQL hot path (bulk.py) talks to psycopg directly, so its
            # errors arrive without SQLAlchemy's wrapping.
            if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
                raise SinkUnavailableError(f"SQL store unreachable: {error}") from error
            raise SinkError(f"SQL store rejected the batch: {error}") from error
        if error is None or not isinstance(error, exc.SQLAlchemyError):
            return
        if isinstance(error, exc.OperationalError | exc.InterfaceError) and not (
            self._dialect == "sqlite"
            and any(text in str(error.orig) for text in self._SQLITE_SCHEMA_ERRORS)
        ):
            raise SinkUnavailableError(f"SQL store unreachable: {error.orig}") from error
        detail = getattr(error, "orig", None) or error
        raise SinkError(f"SQL store rejected the batch: {detail}") from error


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            url,
            # After a database restart, pooled connections are dead; check first.
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5, "options": "-c timezone=UTC"},
        )
    raise SinkError(f"unsupported SQL url {parsed.render_as_string()}: use sqlite or postgresql")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets dashboards read while the sink writes; NORMAL sync is durable in WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# ----------------------------------------------------------------- comparison


def _normalize(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict | list):
        return json.loads(json.dumps(value, sort_keys=True))
    return value


def dump_tables(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows ordered by primary key, values normalized for comparing
    two databases (UTC ISO datetimes, floats rounded to 3 decimals, volatile
    columns such as ``updated_at`` left out)."""
    engine = _create_engine(url)
    try:
        with _ErrorTranslator(engine.dialect.name), engine.connect() as conn:
            dump: dict[str, list[dict[str, Any]]] = {}
            for name, table in sorted(Base.metadata.tables.items()):
                columns = [c for c in table.columns if c.name not in VOLATILE_COLUMNS]
                query = select(*columns).order_by(*table.primary_key.columns)
                dump[name] = [
                    {key: _normalize(value) for key, value in row.items()}
                    for row in conn.execute(query).mappings()
                ]
            return dump
    finally:
        engine.dispose()
