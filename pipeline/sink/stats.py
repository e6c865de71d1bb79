"""Derivation of ``channel_stats`` from the base tables.

channel_stats is never incremented: a redelivered or replayed batch would then
count twice. Instead, inside the batch's transaction, the minute buckets a batch
may have changed are derived again from the base tables, **per source**: each
source (a base table and the timestamp that places its rows, see :data:`SOURCES`)
owns a disjoint set of counter columns, and only the buckets that source touched
(old and new position of every row the batch writes) get only its columns
recomputed, with one set-based ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO
UPDATE``. Minute rows whose counters all fell to zero are deleted, so the table
always equals a plain GROUP BY over the base tables, whatever the batch history.
Hour rows are then derived again as sums of their minute rows (at most 60 per
channel). The touched buckets travel to the database in a temporary table
(``cx_touched``; COPY on PostgreSQL), so every statement is a join, not an
ever-growing OR of ranges.

Which timestamp puts a counter into a bucket (the channel column in brackets):

- contacts_started, first_reply_*: ``contacts.started_at`` (channel)
- contacts_ended, resolved, unresolved, abandoned, transferred: ``contacts.ended_at``
- fcr_*, nps_*: ``sessions.started_at`` of final sessions (first_channel)
- sla_warnings, sla_breaches: ``sla_events.fired_at`` (channel)
- switch_failures_out / _in: ``channel_switch_failures.occurred_at``
  (from_channel / to_channel)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, DateTime, MetaData, String, Table, insert

from pipeline.core.records import SESSION_FINAL, SLA_BREACH, SLA_WARNING
from pipeline.sink.models import FIRST_REPLY_BUCKETS, STATS_COUNTERS, ms_to_utc, utc_to_ms

BUCKET_MS: dict[str, int] = {"minute": 60_000, "hour": 3_600_000}

# One minute bucket a source must recompute: (source name, channel, bucket start ms).
Bucket = tuple[str, str, int]


def _flag(condition: str) -> str:
    # Rows of the LEFT JOIN without a base row have NULLs: the condition is then
    # not true, so they add 0, and an emptied bucket sums to exactly 0.
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


@dataclass(frozen=True, slots=True)
class StatsSource:
    """A base table seen as a contributor to channel_stats.

    ``counters`` maps each channel_stats column this source owns to its SQL
    aggregate over the base rows (alias ``s``); no two sources share a column.
    ``condition`` (SQL on ``s``) and ``counts`` (Python on a row) agree on which
    rows contribute at all.
    """

    name: str
    table: str
    channel: str
    at: str
    condition: str
    counts: Callable[[Mapping[str, Any]], bool]
    counters: Mapping[str, str]
    also_reads: tuple[str, ...] = ()  # further columns ``counts`` looks at

    @property
    def columns(self) -> tuple[str, ...]:
        """Base columns needed to place a row (:meth:`buckets_of`)."""
        return tuple(dict.fromkeys((self.channel, self.at, *self.also_reads)))

    def buckets_of(self, row: Mapping[str, Any]) -> Iterator[Bucket]:
        """The minute bucket ``row`` counts in for this source (none if it does not count)."""
        if self.counts(row):
            at = utc_to_ms(row[self.at])
            yield self.name, row[self.channel], at - at % BUCKET_MS["minute"]


_REPLY = "s.first_reply_seconds"
SOURCES: tuple[StatsSource, ...] = (
    StatsSource(
        "contacts_started", "contacts", "channel", "started_at", "TRUE",
        lambda row: True,
        {
            "contacts_started": "COUNT(s.contact_id)",
            "first_reply_sum_seconds": f"COALESCE(SUM({_REPLY}), 0.0)",
            "first_reply_count": f"COUNT({_REPLY})",
            **{f"first_reply_le_{le}s": _flag(f"{_REPLY} <= {le}") for le in FIRST_REPLY_BUCKETS},
            "first_reply_le_inf": f"COUNT({_REPLY})",
        },
    ),
    StatsSource(
        "contacts_ended", "contacts", "channel", "ended_at",
        "s.ended_at IS NOT NULL", lambda row: row["ended_at"] is not None,
        {
            "contacts_ended": "COUNT(s.contact_id)",
            **{name: _flag(f"s.outcome = '{name}'")
               for name in ("resolved", "unresolved", "abandoned", "transferred")},
        },
    ),
    StatsSource(
        "final_sessions", "sessions", "first_channel", "started_at",
        f"s.status = '{SESSION_FINAL}'", lambda row: row["status"] == SESSION_FINAL,
        {
            "fcr_numerator": _flag("s.first_contact_resolved"),
            # Decided journeys only: NULL (undecided, no contact) counts in neither.
            "fcr_denominator": "COUNT(s.first_contact_resolved)",
            "nps_promoters": _flag("s.nps_score >= 9"),
            "nps_passives": _flag("s.nps_score BETWEEN 7 AND 8"),
            "nps_detractors": _flag("s.nps_score <= 6"),
        },
        ("status",),
    ),
    StatsSource(
        "sla_fired", "sla_events", "channel", "fired_at",
        f"s.kind IN ('{SLA_WARNING}', '{SLA_BREACH}')",
        lambda row: row["kind"] in (SLA_WARNING, SLA_BREACH),
        {
            "sla_warnings": _flag(f"s.kind = '{SLA_WARNING}'"),
            "sla_breaches": _flag(f"s.kind = '{SLA_BREACH}'"),
        },
        ("kind",),
    ),
    StatsSource(
        "switch_out", "channel_switch_failures", "from_channel", "occurred_at",
        "TRUE", lambda row: True, {"switch_failures_out": "COUNT(s.signal_id)"},
    ),
    StatsSource(
        "switch_in", "channel_switch_failures", "to_channel", "occurred_at",
        "TRUE", lambda row: True, {"switch_failures_in": "COUNT(s.signal_id)"},
    ),
)  # fmt: skip

SOURCES_BY_TABLE: dict[str, tuple[StatsSource, ...]] = {}
for _source in SOURCES:
    SOURCES_BY_TABLE[_source.table] = (*SOURCES_BY_TABLE.get(_source.table, ()), _source)

assert sorted(c for s in SOURCES for c in s.counters) == sorted(STATS_COUNTERS), (
    "every channel_stats counter must belong to exactly one source"
)


def table_columns(table: str) -> tuple[str, ...]:
    """Columns of base table ``table`` needed to place its rows in buckets."""
    return tuple(dict.fromkeys(c for s in SOURCES_BY_TABLE[table] for c in s.columns))


def buckets_of(table: str, rows: Iterable[Mapping[str, Any]]) -> set[Bucket]:
    """Every (source, channel, minute) the base rows of ``table`` count in."""
    sources = SOURCES_BY_TABLE.get(table, ())
    return {bucket for row in rows for source in sources for bucket in source.buckets_of(row)}


# ------------------------------------------------------------------ SQL side

_TOUCHED = Table(
    "cx_touched",
    MetaData(),
    Column("source", String(32)),
    Column("channel", String(64)),
    Column("bucket_start", DateTime(timezone=True)),
    Column("bucket_end", DateTime(timezone=True)),
)  # only for SQLite's inserts: SQLAlchemy formats its datetimes like the base tables
_TOUCHED_COLUMNS = "source, channel, bucket_start, bucket_end"
_HOUR = "hour"  # the source name of touched hour rows in cx_touched


def _source_sql(source: StatsSource, lateral: bool) -> str:
    """Recompute ``source``'s counters (and only those) in its touched minute buckets.

    With ``lateral`` (PostgreSQL) each touched bucket aggregates its own index
    range scan; a plain join lets the planner hash-join the whole base table,
    which grows with the database instead of with the batch. SQLite (no LATERAL)
    gets the same result from a LEFT JOIN, which its planner already runs as
    index lookups per touched bucket.
    """
    # A new row needs every counter (the defaults are client-side); the other
    # sources' counters start at 0 and are left alone on conflict. COALESCE: SUM
    # over no rows is NULL.
    names = ", ".join(STATS_COUNTERS)
    values = ", ".join(
        f"COALESCE(a.{name}, 0)" if name in source.counters else "0" for name in STATS_COUNTERS
    )
    aggregates = ", ".join(f"{expr} AS {name}" for name, expr in source.counters.items())
    match = (
        f"s.{source.channel} = t.channel AND s.{source.at} >= t.bucket_start "
        f"AND s.{source.at} < t.bucket_end AND {source.condition}"
    )
    if lateral:
        select = (
            f"SELECT 'minute', t.bucket_start, t.channel, {values} FROM cx_touched t "
            f"CROSS JOIN LATERAL (SELECT {aggregates} FROM {source.table} s WHERE {match}) a "
            f"WHERE t.source = '{source.name}'"
        )
    else:
        # WHERE before ON CONFLICT also keeps SQLite's parser from reading the
        # upsert's ON as part of the join.
        select = (
            f"SELECT 'minute', a.bucket_start, a.channel, {values} FROM "
            f"(SELECT t.bucket_start, t.channel, {aggregates} FROM cx_touched t "
            f"LEFT JOIN {source.table} s ON {match} WHERE t.source = '{source.name}' "
            f"GROUP BY t.bucket_start, t.channel) a WHERE TRUE"
        )
    updates = ", ".join(f"{name} = excluded.{name}" for name in source.counters)
    return (
        f"INSERT INTO channel_stats (bucket_size, bucket_start, channel, {names}) {select} "
        f"ON CONFLICT (bucket_size, bucket_start, channel) DO UPDATE SET {updates}"
    )


_SOURCE_SQL = {
    (source.name, lateral): _source_sql(source, lateral)
    for source in SOURCES
    for lateral in (True, False)
}

_IN_TOUCHED = (
    "EXISTS (SELECT 1 FROM cx_touched t WHERE t.source = '{source}' "
    "AND t.channel = channel_stats.channel AND t.bucket_start = channel_stats.bucket_start)"
)
# Every contributing base row adds 1 to at least one counter, so an all-zero
# minute row has no base rows left: delete it, as a fresh GROUP BY would not have it.
_DELETE_EMPTY_MINUTES = (
    "DELETE FROM channel_stats WHERE bucket_size = 'minute' AND "
    + " AND ".join(f"{name} = 0" for name in STATS_COUNTERS)
    + " AND EXISTS (SELECT 1 FROM cx_touched t WHERE t.source <> 'hour' "
    "AND t.channel = channel_stats.channel AND t.bucket_start = channel_stats.bucket_start)"
)
_DELETE_HOURS = "DELETE FROM channel_stats WHERE bucket_size = 'hour' AND " + _IN_TOUCHED.format(
    source=_HOUR
)
_INSERT_HOURS = (
    f"INSERT INTO channel_stats (bucket_size, bucket_start, channel, {', '.join(STATS_COUNTERS)}) "
    f"SELECT 'hour', t.bucket_start, t.channel, "
    f"{', '.join(f'SUM(m.{name})' for name in STATS_COUNTERS)} FROM cx_touched t "
    f"JOIN channel_stats m ON m.bucket_size = 'minute' AND m.channel = t.channel "
    f"AND m.bucket_start >= t.bucket_start AND m.bucket_start < t.bucket_end "
    f"WHERE t.source = '{_HOUR}' GROUP BY t.bucket_start, t.channel"
)


def _touched_rows(buckets: Iterable[Bucket]) -> list[tuple[str, str, int, int]]:
    """cx_touched rows: the minute buckets, plus the hour of each (source 'hour')."""
    rows: set[tuple[str, str, int, int]] = set()
    minute, hour = BUCKET_MS["minute"], BUCKET_MS[_HOUR]
    for source, channel, start in buckets:
        rows.add((source, channel, start, start + minute))
        rows.add((_HOUR, channel, start - start % hour, start - start % hour + hour))
    return sorted(rows)


# PostgreSQL fills cx_touched in SQL (see :func:`touched_sql`), straight from the
# staged and the old rows, so bucket positions never travel to Python and back.
TOUCHED_DDL_POSTGRES = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS cx_touched (source VARCHAR(32), "
    "channel VARCHAR(64), bucket_start timestamptz, bucket_end timestamptz) "
    "ON COMMIT DELETE ROWS"
)


def _utc_trunc(unit: str, expression: str) -> str:
    # Truncating in UTC explicitly: the session time zone must not move buckets.
    return f"date_trunc('{unit}', {expression}, 'UTC')"


def touched_sql(table: str, relation: str) -> str:
    """``INSERT INTO cx_touched`` the minute buckets the rows of ``relation`` count in.

    ``relation`` (a table or CTE name) has at least :func:`table_columns` of base
    table ``table``; the result equals :func:`buckets_of` of those rows.
    """
    selects = " UNION ".join(
        f"SELECT '{source.name}', s.{source.channel}, {_utc_trunc('minute', f's.{source.at}')} "
        f"FROM {relation} s WHERE {source.condition}"
        for source in SOURCES_BY_TABLE[table]
    )
    return (
        # DISTINCT: an old and a new row (or two rows) may share a bucket, and
        # the recomputing upsert may touch each channel_stats row only once.
        f"INSERT INTO cx_touched ({_TOUCHED_COLUMNS}) SELECT DISTINCT t.*, t.m + interval "
        f"'1 minute' FROM ({selects}) t (source, channel, m)"
    )


def recompute_touched_sql(tables: Iterable[str]) -> str:
    """The statements (one string) that re-derive channel_stats on PostgreSQL once
    :func:`touched_sql` filled cx_touched for every base table in ``tables``."""
    hours = (
        f"INSERT INTO cx_touched ({_TOUCHED_COLUMNS}) SELECT DISTINCT '{_HOUR}', channel, "
        f"{_utc_trunc('hour', 'bucket_start')}, "
        f"{_utc_trunc('hour', 'bucket_start')} + interval '1 hour' FROM cx_touched"
    )
    sources = sorted(s.name for table in tables for s in SOURCES_BY_TABLE.get(table, ()))
    return ";\n".join(
        [
            hours,
            *(_SOURCE_SQL[name, True] for name in sources),
            _DELETE_EMPTY_MINUTES,
            _DELETE_HOURS,
            _INSERT_HOURS,
        ]
    )


def recompute_channel_stats(conn: Connection, buckets: Iterable[Bucket]) -> None:
    """Re-derive every channel_stats row the touched minute buckets fall into.

    Runs on ``conn`` inside the caller's transaction; afterwards the minute and
    hour rows of those buckets equal a fresh GROUP BY over the base tables.
    """
    rows = _touched_rows(buckets)
    if not rows:
        return
    postgres = conn.dialect.name == "postgresql"
    # Created once per connection and emptied by every commit (PostgreSQL) or at
    # the start of every batch (SQLite, which has no ON COMMIT clause).
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE IF NOT EXISTS cx_touched (source VARCHAR(32), "
        "channel VARCHAR(64), bucket_start {0}, bucket_end {0}){1}".format(
            *(("timestamptz", " ON COMMIT DELETE ROWS") if postgres else ("DATETIME", ""))
        )
    )
    if postgres:
        raw = conn.connection.driver_connection
        copy_sql = f"COPY cx_touched ({_TOUCHED_COLUMNS}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:  # type: ignore[union-attr]
            for source, channel, start, end in rows:
                copy.write_row((source, channel, ms_to_utc(start), ms_to_utc(end)))
    else:
        conn.exec_driver_sql("DELETE FROM cx_touched")
        conn.execute(
            insert(_TOUCHED),
            [
                dict(zip(_TOUCHED.c.keys(), (s, c, ms_to_utc(a), ms_to_utc(b)), strict=True))
                for s, c, a, b in rows
            ],
        )
    for source in sorted({row[0] for row in rows} - {_HOUR}):
        conn.exec_driver_sql(_SOURCE_SQL[source, postgres])
    conn.exec_driver_sql(_DELETE_EMPTY_MINUTES)
    conn.exec_driver_sql(_DELETE_HOURS)
    conn.exec_driver_sql(_INSERT_HOURS)
