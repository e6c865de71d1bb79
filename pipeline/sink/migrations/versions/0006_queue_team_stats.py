"""Per-minute/hour stats per queue and team, and the queue and team of a need (issue 15 part 4).

``queue_team_stats`` is a view: the contact and SLA counters of ``channel_stats``
split by the ``queue`` and ``team`` columns of their base rows (NULL when the
events named none, as in the service-level views of migration 0005), per minute
and per hour. Its rows summed per (bucket_size, bucket_start, channel) equal the
same columns of ``channel_stats``, which stays as it was (docs/sql.md "Stats per
queue and team"): a view cannot drift from the base tables, and the sink's
write path is unchanged.

``needs`` gains ``first_contact_id`` (the need's first contact by start time);
``need_queue_team`` gives each need the queue and team of that contact (its
latest ones, as ``contacts`` holds them). Rows written before read NULL.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: The view's counters: column -> (base table, timestamp that places a row, SQL
#: aggregate over the base rows ``s``). The same timestamps and conditions as the
#: channel_stats sources of the same name (pipeline/sink/stats.py).
QUEUE_TEAM_COUNTERS: dict[str, tuple[str, str, str]] = {
    "contacts_started": ("contacts", "started_at", "COUNT(*)"),
    "first_reply_count": ("contacts", "started_at", "COUNT(s.first_reply_seconds)"),
    "first_reply_sum_seconds": (
        "contacts",
        "started_at",
        "COALESCE(SUM(s.first_reply_seconds), 0.0)",
    ),
    "contacts_ended": ("contacts", "ended_at", "COUNT(*)"),
    **{
        outcome: (
            "contacts",
            "ended_at",
            f"SUM(CASE WHEN s.outcome = '{outcome}' THEN 1 ELSE 0 END)",
        )
        for outcome in ("resolved", "unresolved", "abandoned", "transferred")
    },
    "sla_warnings": (
        "sla_events",
        "fired_at",
        "SUM(CASE WHEN s.kind = 'warning' THEN 1 ELSE 0 END)",
    ),
    "sla_breaches": (
        "sla_events",
        "fired_at",
        "SUM(CASE WHEN s.kind = 'breach' THEN 1 ELSE 0 END)",
    ),
}

#: Which base rows count at all (as in channel_stats: retracted SLA rows do not).
_CONDITIONS = {
    ("contacts", "started_at"): "TRUE",
    ("contacts", "ended_at"): "s.ended_at IS NOT NULL",
    ("sla_events", "fired_at"): "s.kind IN ('warning', 'breach')",
}

_VIEW = "queue_team_stats"
_NEED_VIEW = "need_queue_team"


def _bucket(dialect: str, size: str, column: str) -> str:
    """The start of the UTC minute/hour of ``column``, as channel_stats stores it."""
    if dialect == "postgresql":
        return f"date_trunc('{size}', {column}, 'UTC')"
    # SQLite keeps DateTime as 'YYYY-MM-DD HH:MM:SS.ffffff' text in UTC.
    pattern = "%Y-%m-%d %H:%M:00.000000" if size == "minute" else "%Y-%m-%d %H:00:00.000000"
    return f"strftime('{pattern}', {column})"


def queue_team_stats_sql(dialect: str) -> str:
    """The ``CREATE VIEW`` of ``queue_team_stats`` for ``dialect``."""
    names = list(QUEUE_TEAM_COUNTERS)
    parts = []
    for size in ("minute", "hour"):
        for table, at in _CONDITIONS:
            values = ", ".join(
                f"{expr} AS {name}" if (source_table, source_at) == (table, at) else f"0 AS {name}"
                for name, (source_table, source_at, expr) in QUEUE_TEAM_COUNTERS.items()
            )
            bucket = _bucket(dialect, size, f"s.{at}")
            parts.append(
                f"SELECT '{size}' AS bucket_size, {bucket} AS bucket_start, s.channel, "
                f"s.queue, s.team, {values} FROM {table} s WHERE {_CONDITIONS[table, at]} "
                f"GROUP BY {bucket}, s.channel, s.queue, s.team"
            )
    # CAST: PostgreSQL sums bigints as numeric; the counters read back as integers.
    sums = ", ".join(
        f"CAST(SUM(u.{name}) AS {'FLOAT' if name.endswith('_seconds') else 'BIGINT'}) AS {name}"
        for name in names
    )
    return (
        f"CREATE VIEW {_VIEW} AS SELECT u.bucket_size, u.bucket_start, u.channel, u.queue, "
        f"u.team, {sums} FROM ({' UNION ALL '.join(parts)}) u "
        "GROUP BY u.bucket_size, u.bucket_start, u.channel, u.queue, u.team"
    )


NEED_QUEUE_TEAM_SQL = f"""
CREATE VIEW {_NEED_VIEW} AS
SELECT n.need_id, n.first_contact_id, c.queue, c.team
FROM needs n
LEFT JOIN contacts c ON c.contact_id = n.first_contact_id
"""


def upgrade() -> None:
    with op.batch_alter_table("needs") as batch:
        batch.add_column(sa.Column("first_contact_id", sa.String(length=200), nullable=True))
    op.execute(queue_team_stats_sql(op.get_bind().dialect.name))
    op.execute(NEED_QUEUE_TEAM_SQL)


def downgrade() -> None:
    op.execute(f"DROP VIEW {_NEED_VIEW}")
    op.execute(f"DROP VIEW {_VIEW}")
    with op.batch_alter_table("needs") as batch:
        batch.drop_column("first_contact_id")
