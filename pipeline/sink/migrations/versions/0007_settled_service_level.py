"""A contact's settled service level; the service-level views count settled rows only (issue 15).

``contacts`` gains ``service_level`` (``answered_in_target``, ``answered_late``,
``abandoned``, NULL: not applicable or not settled) and ``settled`` (true once
the core decided it: the partition clock passed the contact's end plus the
session gap plus the grace, or the core let an unended contact go). The core
decides it once and never changes it, so the views and the Prometheus counters
(``cxstream_sla_answered_total`` & co., counted on the summary that settles it)
agree under any arrival order. Rows written before read ``settled`` false and
are not counted (replay the history to rebuild them).

The views of migration 0005 are replaced, same names and columns:
answered = settled in or out of target, answered_within_target = settled in
target, abandoned = settled abandoned; ``service_level`` = within target /
(answered + abandoned), NULL when nothing counts.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SERVICE_LEVEL_VIEWS = {
    "service_level": "channel, queue, team",
    "service_level_by_queue": "queue",
    "service_level_by_team": "team",
}


def settled_service_level_view_sql(name: str, columns: str) -> str:
    """The view ``name`` grouping the settled contacts' service-level counts by ``columns``."""
    return f"""
CREATE VIEW {name} AS
SELECT {columns},
       SUM(answered) AS answered,
       SUM(answered_within_target) AS answered_within_target,
       SUM(abandoned) AS abandoned,
       CASE WHEN SUM(answered) + SUM(abandoned) = 0 THEN NULL
            ELSE CAST(SUM(answered_within_target) AS FLOAT)
                 / (SUM(answered) + SUM(abandoned)) END AS service_level
FROM (
    SELECT c.channel, c.queue, c.team,
           CASE WHEN c.service_level IN ('answered_in_target', 'answered_late')
                THEN 1 ELSE 0 END AS answered,
           CASE WHEN c.service_level = 'answered_in_target' THEN 1 ELSE 0 END
                AS answered_within_target,
           CASE WHEN c.service_level = 'abandoned' THEN 1 ELSE 0 END AS abandoned
    FROM contacts c
    WHERE c.settled
) AS per_contact
GROUP BY {columns}
"""


def upgrade() -> None:
    for name in SERVICE_LEVEL_VIEWS:
        op.execute(f"DROP VIEW {name}")
    # Plain ADD COLUMN (no batch copy of the table): other views read contacts.
    op.add_column("contacts", sa.Column("service_level", sa.String(length=32), nullable=True))
    op.add_column(
        "contacts",
        sa.Column("settled", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    for name, columns in SERVICE_LEVEL_VIEWS.items():
        op.execute(settled_service_level_view_sql(name, columns))


# The per-contact counts of migration 0005's views, restored by downgrade().
_BEFORE = """
    SELECT c.channel, c.queue, c.team,
           CASE WHEN c.first_reply_seconds IS NOT NULL THEN 1 ELSE 0 END AS answered,
           CASE WHEN c.first_reply_seconds IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM sla_events s
                     WHERE s.contact_id = c.contact_id
                       AND s.metric = 'first_reply' AND s.kind = 'breach')
                THEN 1 ELSE 0 END AS answered_within_target,
           CASE WHEN c.first_reply_seconds IS NULL AND c.outcome = 'abandoned'
                THEN 1 ELSE 0 END AS abandoned
    FROM contacts c
"""


def downgrade() -> None:
    for name in SERVICE_LEVEL_VIEWS:
        op.execute(f"DROP VIEW {name}")
    op.drop_column("contacts", "settled")
    op.drop_column("contacts", "service_level")
    for name, columns in SERVICE_LEVEL_VIEWS.items():
        settled = settled_service_level_view_sql(name, columns)
        start, end = settled.index("    SELECT c.channel"), settled.index(") AS per_contact")
        op.execute(settled[:start] + _BEFORE.lstrip("\n") + settled[end:])
