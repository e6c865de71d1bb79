"""``contacts.identified_at``: when a contact's customer was identified (issue 16).

The start of the identity link (``identity_links.valid_from``) through which the
contact's events reached their customer: a call known by its phone number until
the IVR identified the caller carries the IVR's ``identified`` time; a call on a
number identified in an earlier contact, that earlier time. NULL for a contact
whose events came with the customer id, and for rows written before.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite has it): the service-level views read contacts,
    # and a batch copy of the table would have to drop and recreate them.
    op.add_column("contacts", sa.Column("identified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("contacts", "identified_at")
