"""``sla_events.identified_at``: the link an SLA record's contact came through (issue 16).

When identity moves a contact to another customer, both customers may send the
contact's SLA records under the same ids, the old one's possibly last (its clock
fired before it learnt of the move). The row keeps the record of the later link
(``models.sla_event_wins``), which needs the link's start on the row. NULL for
records whose contact came with the customer id, and for rows written before.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, as in 0009: views read sla_events.
    op.add_column(
        "sla_events", sa.Column("identified_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("sla_events", "identified_at")
