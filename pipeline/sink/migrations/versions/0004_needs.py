"""Needs and bouncing (issue 15, parts 1 and 2).

A ``needs`` table (one row per need, the newest record wins), a ``bounce_signals``
table (one row per ``bounced`` journey signal), and two views of the bounce rate
of closed needs: ``bounce_rate_by_first_channel`` and ``bounce_rate_by_topic``
(docs/sql.md "Needs and bouncing").

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Closed needs only: an open need may still bounce.
BOUNCE_RATE_VIEWS = {
    "bounce_rate_by_first_channel": "first_channel",
    "bounce_rate_by_topic": "topic",
}


def _view_sql(name: str, column: str) -> str:
    return f"""
CREATE VIEW {name} AS
SELECT {column},
       COUNT(*) AS needs,
       SUM(CASE WHEN bounced THEN 1 ELSE 0 END) AS bounced,
       CAST(SUM(CASE WHEN bounced THEN 1 ELSE 0 END) AS FLOAT) / COUNT(*) AS bounce_rate
FROM needs
WHERE status = 'final'
GROUP BY {column}
"""


def upgrade() -> None:
    op.create_table(
        "needs",
        sa.Column("need_id", sa.String(length=400), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("channel_path", sa.Text(), nullable=False),
        sa.Column("first_channel", sa.String(length=64), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("channel_switches", sa.Integer(), nullable=False),
        sa.Column("switch_failures", sa.Integer(), nullable=False),
        sa.Column("first_contact_resolved", sa.Boolean(), nullable=True),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("customer_wait_seconds", sa.Float(), nullable=False),
        sa.Column("handling_seconds", sa.Float(), nullable=True),
        sa.Column("sla_breaches", sa.Integer(), nullable=False),
        sa.Column("feedback_count", sa.Integer(), nullable=False),
        sa.Column("feedback_average", sa.Float(), nullable=True),
        sa.Column("bounced", sa.Boolean(), nullable=False),
        sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("need_id", name=op.f("pk_needs")),
    )
    op.create_index(op.f("ix_needs_customer_id"), "needs", ["customer_id"], unique=False)
    op.create_index(
        op.f("ix_needs_first_channel_opened_at"), "needs", ["first_channel", "opened_at"]
    )
    op.create_index(op.f("ix_needs_topic_opened_at"), "needs", ["topic", "opened_at"])
    op.create_table(
        "bounce_signals",
        sa.Column("signal_id", sa.String(length=400), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("from_contact_id", sa.String(length=200), nullable=False),
        sa.Column("from_channel", sa.String(length=64), nullable=False),
        sa.Column("from_outcome", sa.String(length=32), nullable=True),
        sa.Column("to_contact_id", sa.String(length=200), nullable=False),
        sa.Column("to_channel", sa.String(length=64), nullable=False),
        sa.Column("gap_seconds", sa.Float(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signal_id", name=op.f("pk_bounce_signals")),
    )
    op.create_index(
        op.f("ix_bounce_signals_customer_id"), "bounce_signals", ["customer_id"], unique=False
    )
    for name, column in BOUNCE_RATE_VIEWS.items():
        op.execute(_view_sql(name, column))


def downgrade() -> None:
    for name in BOUNCE_RATE_VIEWS:
        op.execute(f"DROP VIEW {name}")
    op.drop_table("bounce_signals")
    op.drop_table("needs")
