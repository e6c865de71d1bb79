"""Queue, team and policy version (issue 15 parts 4 and 5), and service-level views.

Contacts and SLA events gain ``queue`` and ``team`` (the latest ones the contact's
events named; contract v2), SLA events ``policy_version`` (the version of the
policy the clock started under). Rows written before read NULL.

Service level (docs/sql.md "Service level"): per contact, *answered* means a
first reply came (``first_reply_seconds`` set), *within target* that it came and
the contact has no first-reply breach in force (a retracted breach row reads
``kind = 'retracted'``), *abandoned* that it ended ``abandoned`` unanswered.
Service level = within target / (answered + abandoned), NULL when nothing counts.
One view per grouping: ``service_level`` (channel, queue, team),
``service_level_by_queue`` (queue), ``service_level_by_team`` (team); their
counts add up across groups, their ratios do not.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SERVICE_LEVEL_VIEWS = {
    "service_level": "channel, queue, team",
    "service_level_by_queue": "queue",
    "service_level_by_team": "team",
}


def service_level_view_sql(name: str, columns: str) -> str:
    """The view ``name`` grouping the contacts' service-level counts by ``columns``."""
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
           CASE WHEN c.first_reply_seconds IS NOT NULL THEN 1 ELSE 0 END AS answered,
           CASE WHEN c.first_reply_seconds IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM sla_events s
                     WHERE s.contact_id = c.contact_id
                       AND s.metric = 'first_reply' AND s.kind = 'breach')
                THEN 1 ELSE 0 END AS answered_within_target,
           CASE WHEN c.first_reply_seconds IS NULL AND c.outcome = 'abandoned'
                THEN 1 ELSE 0 END AS abandoned
    FROM contacts c
) AS per_contact
GROUP BY {columns}
"""


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("queue", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("team", sa.String(length=200), nullable=True))
    with op.batch_alter_table("sla_events") as batch:
        batch.add_column(sa.Column("policy_version", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("queue", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("team", sa.String(length=200), nullable=True))
    for name, columns in SERVICE_LEVEL_VIEWS.items():
        op.execute(service_level_view_sql(name, columns))


def downgrade() -> None:
    for name in SERVICE_LEVEL_VIEWS:
        op.execute(f"DROP VIEW {name}")
    with op.batch_alter_table("sla_events") as batch:
        batch.drop_column("team")
        batch.drop_column("queue")
        batch.drop_column("policy_version")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("team")
        batch.drop_column("queue")
