"""Contacts carry their summary's version, so a redelivered older summary loses.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows written before this column existed read as version 0: any summary
    # written from now on (version 1 and up) replaces them.
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("version")
