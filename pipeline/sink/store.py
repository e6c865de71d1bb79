"""The SQL store: idempotent batch upserts of output records (SQLite and PostgreSQL).

The Faust sink agent and the offline replay both call :meth:`SqlStore.write`, so
streaming and replay fill identical tables. Every batch is one transaction:
upserts on natural keys, then the affected ``channel_stats`` rows are derived
again from the base tables (:mod:`pipeline.sink.stats`), so a redelivered or
replayed batch leaves the database exactly as it was.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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

from pipeline.errors import SinkError, SinkRejectedError, SinkUnavailableError
from pipeline.sink import bulk
from pipeline.sink.migrate import upgrade_connection
from pipeline.sink.models import Base, row_wins_sql
from pipeline.sink.pseudonym import Pseudonymizer
from pipeline.sink.rows import Batch, Record, rows_by_table, tuples_by_table
from pipeline.sink.stats import (
    SOURCES_BY_TABLE,
    Bucket,
    buckets_of,
    recompute_channel_stats,
    table_columns,
)

__all__ = [
    "Batch",
    "Record",
    "Sink",
    "SqlStore",
    "WriteResult",
    "classify_error",
    "dump_tables",
    "rows_by_table",
    "translate_errors",
]

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
        offsets may be committed; if it raises, nothing of the batch is stored:
        SinkRejectedError when some record's data is refused (split the batch to
        find it), SinkUnavailableError when the database is out of reach."""
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
        with translate_errors(), self._engine.begin() as conn:
            upgrade_connection(conn)

    def write(self, batch: Batch) -> WriteResult:
        """Upsert a batch in one transaction and re-derive the channel_stats it touches.

        Idempotent: writing the same batch again leaves every table unchanged.
        Raises SinkRejectedError when the database refuses the batch's data (some
        record is at fault), SinkUnavailableError when the database cannot be
        reached (retry later), and SinkError for anything else.
        """
        if self.dialect == "postgresql":
            tuples = tuples_by_table(batch, self._pseudonymizer)
            if not tuples:
                return WriteResult(records=0)
            with translate_errors(), self._engine.begin() as conn:
                bulk.write(conn, {name: rows.values() for name, rows in tuples.items()})
            return WriteResult(
                records=len(batch), rows={name: len(rows) for name, rows in tuples.items()}
            )
        tables = rows_by_table(batch, self._pseudonymizer)
        if not tables:
            return WriteResult(records=0)
        with translate_errors(), self._engine.begin() as conn:
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
        where = row_wins_sql(table, stmt.excluded)
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates, where=where)
        conn.execute(stmt, rows)


# ------------------------------------------------------------ error mapping

# SQLSTATE classes where PostgreSQL refuses the data itself: 22 data exception
# (NUL byte, out of range, too long, bad encoding), 23 integrity constraint
# violation, 54 program limit exceeded (e.g. an index row too large for a key).
# psycopg files 54 under OperationalError, so the SQLSTATE decides, not the class.
_PG_REJECTED_CLASSES = frozenset({"22", "23", "54"})
# sqlite3 reports schema mistakes as OperationalError too; those are not outages.
_SQLITE_SCHEMA_ERRORS = ("no such table", "no such column", "has no column", "syntax error")


def classify_error(error: BaseException) -> type[SinkError] | None:
    """Which :class:`SinkError` a failed write is; the one place that maps SQLAlchemy,
    psycopg and sqlite3 exceptions.

    - :class:`SinkRejectedError`: the database (or the driver, binding a value)
      refuses this data; writing it again can never succeed.
    - :class:`SinkUnavailableError`: the database is down, unreachable, locked,
      out of resources, or aborted the transaction (deadlock); retry as is.
    - :class:`SinkError`: neither (a missing table, a revoked permission); retry.
    - ``None``: not a database error at all; let it propagate unchanged.
    """
    if isinstance(error, exc.StatementError):  # DBAPIError included
        if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
            return SinkUnavailableError
        if error.orig is None:
            return SinkError
        if isinstance(error.orig, TypeError):
            # A bind processor refusing a value (e.g. SQLite's DateTime given a str).
            return SinkRejectedError
        return classify_error(error.orig) or SinkError
    if isinstance(error, exc.DisconnectionError | exc.TimeoutError):
        return SinkUnavailableError
    if isinstance(error, exc.SQLAlchemyError):
        return SinkError
    if isinstance(error, psycopg.Error):
        if isinstance(error, psycopg.DataError | psycopg.IntegrityError) or (
            (error.sqlstate or "")[:2] in _PG_REJECTED_CLASSES
        ):
            return SinkRejectedError
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            return SinkUnavailableError
        return SinkError
    if isinstance(error, sqlite3.Error):
        if isinstance(error, sqlite3.IntegrityError | sqlite3.DataError):
            return SinkRejectedError
        text = str(error)
        if "Error binding parameter" in text:
            return SinkRejectedError
        if isinstance(error, sqlite3.OperationalError | sqlite3.InterfaceError) and not any(
            schema_error in text for schema_error in _SQLITE_SCHEMA_ERRORS
        ):
            return SinkUnavailableError
        return SinkError
    if isinstance(error, OverflowError | ValueError):
        # Raised while a driver binds a value (sqlite3: an int over 2**63 - 1; an
        # unpaired surrogate in a str): the record is at fault.
        return SinkRejectedError
    return None


_MESSAGES: dict[type[SinkError], str] = {
    SinkRejectedError: "SQL store rejected the data",
    SinkUnavailableError: "SQL store unreachable",
    SinkError: "SQL store failed the batch",
}


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise a database failure as the :class:`SinkError` :func:`classify_error` names."""
    try:
        yield
    except Exception as error:
        kind = classify_error(error)
        if kind is None:
            raise
        cause = getattr(error, "orig", None) or error
        raise kind(f"{_MESSAGES[kind]}: {type(cause).__name__}: {cause}") from error


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # connect_args replace the URL's own ``options`` (a replay run's
        # ``-csearch_path=run_NAME``, pipeline.replay_sql.run_url): keep both.
        options = " ".join(filter(None, [str(parsed.query.get("options", "")), "-c timezone=UTC"]))
        return create_engine(
            url,
            # After a database restart, pooled connections are dead; check first.
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5, "options": options},
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
        with translate_errors(), engine.connect() as conn:
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
