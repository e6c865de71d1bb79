"""FCR by need, bot containment and every feedback score (issue 13, defects 6 and 7).

Sessions: ``first_contact_resolved`` may be NULL (undecided) and now means "the
first contact resolved its need"; ``first_outcome_resolved`` keeps the old figure
(the first contact ended resolved), ``nps_average`` the mean NPS answer. Contacts:
``first_contact_resolved``, ``bot_only``, ``contained``. A ``feedback`` table (one
row per feedback event) and a ``containment`` view (bot-only contacts per channel
and topic).

Rows written before this migration: their ``first_contact_resolved`` was the first
outcome, so it moves to ``first_outcome_resolved`` and the FCR by need reads NULL
(not known); contacts read NULL and ``bot_only`` false until summaries are written
again (a replay of the input fills them).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CONTAINMENT_VIEW = """
CREATE VIEW containment AS
SELECT channel,
       topic,
       COUNT(contained) AS bot_contacts,
       SUM(CASE WHEN contained THEN 1 ELSE 0 END) AS contained,
       CAST(SUM(CASE WHEN contained THEN 1 ELSE 0 END) AS FLOAT) / COUNT(contained)
           AS containment_rate
FROM contacts
WHERE contained IS NOT NULL
GROUP BY channel, topic
"""


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.alter_column("first_contact_resolved", existing_type=sa.Boolean(), nullable=True)
        batch.add_column(sa.Column("first_outcome_resolved", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("nps_average", sa.Float(), nullable=True))
    op.execute(
        "UPDATE sessions SET first_outcome_resolved = first_contact_resolved,"
        " first_contact_resolved = NULL"
    )
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("first_contact_resolved", sa.Boolean(), nullable=True))
        batch.add_column(
            sa.Column("bot_only", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("contained", sa.Boolean(), nullable=True))
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.String(length=200), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("feedback_id", name=op.f("pk_feedback")),
    )
    for column in ("contact_id", "session_id", "customer_id"):
        op.create_index(op.f(f"ix_feedback_{column}"), "feedback", [column], unique=False)
    op.execute(CONTAINMENT_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW containment")
    op.drop_table("feedback")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("contained")
        batch.drop_column("bot_only")
        batch.drop_column("first_contact_resolved")
    op.execute(
        "UPDATE sessions SET first_contact_resolved = COALESCE(first_outcome_resolved, FALSE)"
    )
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("nps_average")
        batch.drop_column("first_outcome_resolved")
        batch.alter_column("first_contact_resolved", existing_type=sa.Boolean(), nullable=False)
