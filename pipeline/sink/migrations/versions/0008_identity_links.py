"""The ``identity_links`` table: an identifier's link periods (issue 16).

One row per period of a channel identifier's link to a customer
(pipeline/sink/identity_links.py): the identifier as a keyed hash, the customer
(NULL: a wrong link was undone), ``valid_from`` and ``valid_to`` (NULL: open).
Nothing else changes; the table is empty until identity events are processed.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_links",
        sa.Column("link_id", sa.String(length=300), nullable=False),
        sa.Column("identifier", sa.String(length=200), nullable=False),
        sa.Column("identifier_kind", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("link_id", name=op.f("pk_identity_links")),
    )
    op.create_index(
        op.f("ix_identity_links_identifier"), "identity_links", ["identifier"], unique=False
    )
    op.create_index(
        op.f("ix_identity_links_customer_id"), "identity_links", ["customer_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_identity_links_customer_id"), table_name="identity_links")
    op.drop_index(op.f("ix_identity_links_identifier"), table_name="identity_links")
    op.drop_table("identity_links")
