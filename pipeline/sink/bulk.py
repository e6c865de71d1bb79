"""PostgreSQL hot path of the store: COPY every table's rows, then one round trip of SQL.

Per batch: ``COPY`` each table's row tuples into its temporary staging table,
then send one string of statements: per base table one ``INSERT ... SELECT ... ON
CONFLICT DO UPDATE`` (with the version rule of sessions and contacts in its ``WHERE``), and
then the channel_stats re-derivation (:func:`pipeline.sink.stats.recompute_touched_sql`).

For a table that feeds channel_stats, the upsert is wrapped in one statement
with the lookup of the rows it replaces::

    SELECT ... FROM base WHERE key IN stage FOR UPDATE;
    WITH old AS (SELECT <bucket columns> FROM base WHERE key IN stage),
         up  AS (INSERT INTO base SELECT * FROM stage ON CONFLICT ...),
         s   AS (SELECT ... FROM old UNION ALL SELECT ... FROM stage)
    INSERT INTO cx_touched <the minute buckets of s>

All parts of one statement see the same snapshot, so ``old`` holds the rows as
they were before the upsert. The lock is taken by the statement before (it waits
for a concurrent writer; the next statement's snapshot then reads its committed
version): a ``FOR UPDATE`` inside the WITH would skip the rows the upsert of the
same statement had already modified. The old and new bucket positions never
travel to Python and back: a separate ``SELECT ... WHERE key = ANY(...)`` per
table plus the Python bucket arithmetic was the largest server and client cost.

The staging tables are ``ON COMMIT DELETE ROWS`` and created per connection
(``IF NOT EXISTS``, all in one round trip). Runs on the raw psycopg connection
of the caller's SQLAlchemy connection, so it shares the batch's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import cache
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql

from pipeline.errors import SinkRejectedError
from pipeline.sink.models import Base, row_wins_sql
from pipeline.sink.stats import (
    SOURCES_BY_TABLE,
    TOUCHED_DDL_POSTGRES,
    recompute_touched_sql,
    table_columns,
    touched_sql,
)

Row = tuple[Any, ...]


def _raw(conn: Connection) -> Any:
    return conn.connection.driver_connection


@cache
def _stage_table(table: Table) -> Table:
    return Table(
        f"cx_stage_{table.name}",
        MetaData(),
        *(Column(column.name, column.type) for column in table.columns),
    )


# Written on every upsert, so never a reason to rewrite an otherwise equal row.
_WRITE_TIME_COLUMNS = frozenset({"updated_at"})


@cache
def _insert_sql(table: Table, returning: tuple[str, ...] = ()) -> str:
    """``INSERT INTO table SELECT * FROM its staging table ON CONFLICT ...``, as text.

    A stored row equal to the staged one (``updated_at`` aside) is left alone: a
    redelivered batch then writes no row versions, index entries or WAL, and
    ``RETURNING`` (of the ``returning`` columns) lists only rows really written.
    """
    stage = _stage_table(table)
    names = [column.name for column in table.columns]
    keys = [column.name for column in table.primary_key.columns]
    stmt = postgresql.insert(table).from_select(names, select(*(stage.c[n] for n in names)))
    updates = {name: stmt.excluded[name] for name in names if name not in keys}
    changed = or_(
        *(
            table.c[name].is_distinct_from(stmt.excluded[name])
            for name in names
            if name not in keys and name not in _WRITE_TIME_COLUMNS
        )
    )
    wins = row_wins_sql(table, stmt.excluded)
    where = changed if wins is None else and_(wins, changed)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=updates, where=where)
    final = stmt.returning(*(table.c[name] for name in returning)) if returning else stmt
    return str(final.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


@cache
def upsert_sql(table: Table) -> str:
    """The upsert of ``table`` from its staging table; for a channel_stats source
    also the old and new minute buckets of every row it wrote into cx_touched."""
    if table.name not in SOURCES_BY_TABLE:
        return _insert_sql(table)
    stage = _stage_table(table).name
    key = table.primary_key.columns.values()[0].name
    columns = table_columns(table.name)
    listed = ", ".join(columns)
    # ANY(ARRAY(...)) rather than a join: always a primary-key index lookup,
    # never a hash join over the whole base table when the stage looks big.
    rows_of_stage = f"FROM {table.name} b WHERE b.{key} = ANY(ARRAY(SELECT {key} FROM {stage}))"
    return (
        # Lock first, in a statement of its own: FOR UPDATE inside the WITH below
        # skips every row the upsert of the same statement has already updated
        # (PostgreSQL ignores tuples the current command modified), so `old` lost
        # rows at random and their old buckets kept counting (a retracted breach
        # stayed in channel_stats). Once locked, the next statement's snapshot
        # holds the latest committed rows and no other writer can move them.
        f"SELECT count(*) FROM (SELECT 1 {rows_of_stage} FOR UPDATE OF b) locked; "
        f"WITH old AS (SELECT {', '.join(f'b.{c}' for c in (key, *columns))} {rows_of_stage}), "
        f"up AS ({_insert_sql(table, (key, *columns))}), "
        # Rows the upsert left alone (equal, or an older version that lost) keep their
        # buckets: only written rows move counts, from where they were to where they are.
        f"placed AS (SELECT {listed} FROM old WHERE {key} IN (SELECT {key} FROM up) "
        f"UNION ALL SELECT {listed} FROM up) " + touched_sql(table.name, "placed")
    )


def _stage_column_sql(column: Column[Any]) -> str:
    # Integers stage as BIGINT: binary COPY truncates a Python int silently to
    # the 4 bytes of an INTEGER column, while the upsert's cast from BIGINT
    # refuses an out-of-range value, as text COPY into INTEGER did.
    kind = BigInteger() if isinstance(column.type, Integer) else column.type
    return f"{column.name} {kind.compile(dialect=postgresql.dialect())}"


@cache
def _setup_sql(tables: tuple[str, ...]) -> str:
    # No constraints: COPY checks nothing until the upsert. A rolled-back batch
    # leaves the tables empty too (their rows are transactional).
    return ";\n".join(
        [
            TOUCHED_DDL_POSTGRES,
            *(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {_stage_table(table).name} "
                f"({', '.join(_stage_column_sql(column) for column in table.columns)}) "
                "ON COMMIT DELETE ROWS"
                for table in (Base.metadata.tables[name] for name in tables)
            ),
        ]
    )


@cache
def _json_positions(table: Table) -> tuple[int, ...]:
    return tuple(i for i, c in enumerate(table.columns) if isinstance(c.type, JSON))


# PostgreSQL type names for binary COPY, most specific SQLAlchemy type first.
_COPY_TYPES: tuple[tuple[type, str], ...] = (
    (JSON, "jsonb"),
    (Text, "text"),
    (String, "varchar"),
    (DateTime, "timestamptz"),
    (Float, "float8"),
    (Boolean, "bool"),
    (Integer, "int8"),  # staged as BIGINT, see _stage_column_sql
)


@cache
def _copy_types(table: Table) -> tuple[str, ...]:
    """Per column the PostgreSQL type the binary COPY of ``table`` sends."""
    return tuple(
        next(name for kind, name in _COPY_TYPES if isinstance(column.type, kind))
        for column in table.columns
    )


def write(conn: Connection, tables: Mapping[str, Collection[Row]]) -> None:
    """Upsert every table's rows (tuples in column order, one per primary key)
    and re-derive the channel_stats they touch, inside ``conn``'s transaction."""
    names = tuple(sorted(tables))
    with _raw(conn).cursor() as cursor:
        # No parameters: psycopg sends the string as one simple query, so several
        # statements cost one round trip.
        cursor.execute(_setup_sql(names), prepare=False)
        for name in names:
            table = Base.metadata.tables[name]
            stage = _stage_table(table).name
            json_positions = _json_positions(table)
            # Binary COPY: psycopg's binary dumpers format a row (most of all its
            # datetimes) about three times faster than its text ones.
            try:
                with cursor.copy(f"COPY {stage} FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(list(_copy_types(table)))
                    if json_positions:
                        for row in tables[name]:
                            copy.write_row(_wrap_json(row, json_positions))
                    else:
                        for row in tables[name]:
                            copy.write_row(row)
            except (TypeError, ValueError, OverflowError) as exc:
                # A value of the wrong Python type for its column (binary COPY
                # does not parse text): the record is at fault, not the database.
                raise SinkRejectedError(f"{name} row cannot be stored: {exc!r}") from exc
        statements = [upsert_sql(Base.metadata.tables[name]) for name in names]
        statements.append(recompute_touched_sql(names))
        cursor.execute(";\n".join(statements), prepare=False)


def _wrap_json(row: Row, positions: tuple[int, ...]) -> list[Any]:
    values = list(row)
    for position in positions:
        values[position] = Jsonb(values[position])
    return values
