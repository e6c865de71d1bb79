"""Initial schema: base tables of the output records and the derived channel_stats.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_stats",
        sa.Column("bucket_size", sa.String(length=8), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("contacts_started", sa.Integer(), nullable=False),
        sa.Column("contacts_ended", sa.Integer(), nullable=False),
        sa.Column("resolved", sa.Integer(), nullable=False),
        sa.Column("unresolved", sa.Integer(), nullable=False),
        sa.Column("abandoned", sa.Integer(), nullable=False),
        sa.Column("transferred", sa.Integer(), nullable=False),
        sa.Column("fcr_numerator", sa.Integer(), nullable=False),
        sa.Column("fcr_denominator", sa.Integer(), nullable=False),
        sa.Column("sla_warnings", sa.Integer(), nullable=False),
        sa.Column("sla_breaches", sa.Integer(), nullable=False),
        sa.Column("switch_failures_out", sa.Integer(), nullable=False),
        sa.Column("switch_failures_in", sa.Integer(), nullable=False),
        sa.Column("first_reply_sum_seconds", sa.Float(), nullable=False),
        sa.Column("first_reply_count", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_30s", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_60s", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_180s", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_600s", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_3600s", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_7200s", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_28800s", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_86400s", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_172800s", sa.Integer(), nullable=False),
        sa.Column("first_reply_le_inf", sa.Integer(), nullable=False),
        sa.Column("nps_promoters", sa.Integer(), nullable=False),
        sa.Column("nps_passives", sa.Integer(), nullable=False),
        sa.Column("nps_detractors", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "bucket_size", "bucket_start", "channel", name=op.f("pk_channel_stats")
        ),
    )
    op.create_table(
        "channel_switch_failures",
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
        sa.PrimaryKeyConstraint("signal_id", name=op.f("pk_channel_switch_failures")),
    )
    op.create_index(
        op.f("ix_channel_switch_failures_customer_id"),
        "channel_switch_failures",
        ["customer_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_channel_switch_failures_from_channel_occurred_at"),
        "channel_switch_failures",
        ["from_channel", "occurred_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_channel_switch_failures_to_channel_occurred_at"),
        "channel_switch_failures",
        ["to_channel", "occurred_at"],
        unique=False,
    )
    op.create_table(
        "contacts",
        sa.Column("contact_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("session_id", sa.String(length=200), nullable=True),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.Column("first_reply_seconds", sa.Float(), nullable=True),
        sa.Column("first_reply_business_seconds", sa.Float(), nullable=True),
        sa.Column("breached", sa.Boolean(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_contacts")),
    )
    op.create_index(
        op.f("ix_contacts_channel_ended_at"), "contacts", ["channel", "ended_at"], unique=False
    )
    op.create_index(
        op.f("ix_contacts_channel_started_at"), "contacts", ["channel", "started_at"], unique=False
    )
    op.create_index(op.f("ix_contacts_customer_id"), "contacts", ["customer_id"], unique=False)
    op.create_index(op.f("ix_contacts_session_id"), "contacts", ["session_id"], unique=False)
    op.create_table(
        "false_resolutions",
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
        sa.PrimaryKeyConstraint("signal_id", name=op.f("pk_false_resolutions")),
    )
    op.create_index(
        op.f("ix_false_resolutions_customer_id"), "false_resolutions", ["customer_id"], unique=False
    )
    op.create_table(
        "late_events",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clock_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column(
            "event_json",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_late_events")),
    )
    op.create_index(
        op.f("ix_late_events_customer_id"), "late_events", ["customer_id"], unique=False
    )
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("superseded_by", sa.String(length=200), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("channel_path", sa.Text(), nullable=False),
        sa.Column("first_channel", sa.String(length=64), nullable=False),
        sa.Column("last_channel", sa.String(length=64), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("channel_switches", sa.Integer(), nullable=False),
        sa.Column("first_contact_resolved", sa.Boolean(), nullable=False),
        sa.Column("resolved_at_end", sa.Boolean(), nullable=False),
        sa.Column("switch_failures", sa.Integer(), nullable=False),
        sa.Column("sla_breaches", sa.Integer(), nullable=False),
        sa.Column("nps_score", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_customer_id"), "sessions", ["customer_id"], unique=False)
    op.create_index(
        op.f("ix_sessions_first_channel_started_at"),
        "sessions",
        ["first_channel", "started_at"],
        unique=False,
    )
    op.create_table(
        "sla_events",
        sa.Column("sla_event_id", sa.String(length=400), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("contact_id", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("policy", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("clock_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("target_seconds", sa.Float(), nullable=False),
        sa.Column("calendar", sa.String(length=64), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("overrun_seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("sla_event_id", name=op.f("pk_sla_events")),
    )
    op.create_index(
        op.f("ix_sla_events_channel_fired_at"), "sla_events", ["channel", "fired_at"], unique=False
    )
    op.create_index(op.f("ix_sla_events_contact_id"), "sla_events", ["contact_id"], unique=False)
    op.create_index(op.f("ix_sla_events_customer_id"), "sla_events", ["customer_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sla_events_customer_id"), table_name="sla_events")
    op.drop_index(op.f("ix_sla_events_contact_id"), table_name="sla_events")
    op.drop_index(op.f("ix_sla_events_channel_fired_at"), table_name="sla_events")
    op.drop_table("sla_events")
    op.drop_index(op.f("ix_sessions_first_channel_started_at"), table_name="sessions")
    op.drop_index(op.f("ix_sessions_customer_id"), table_name="sessions")
    op.drop_table("sessions")
    op.drop_index(op.f("ix_late_events_customer_id"), table_name="late_events")
    op.drop_table("late_events")
    op.drop_index(op.f("ix_false_resolutions_customer_id"), table_name="false_resolutions")
    op.drop_table("false_resolutions")
    op.drop_index(op.f("ix_contacts_session_id"), table_name="contacts")
    op.drop_index(op.f("ix_contacts_customer_id"), table_name="contacts")
    op.drop_index(op.f("ix_contacts_channel_started_at"), table_name="contacts")
    op.drop_index(op.f("ix_contacts_channel_ended_at"), table_name="contacts")
    op.drop_table("contacts")
    op.drop_index(
        op.f("ix_channel_switch_failures_to_channel_occurred_at"),
        table_name="channel_switch_failures",
    )
    op.drop_index(
        op.f("ix_channel_switch_failures_from_channel_occurred_at"),
        table_name="channel_switch_failures",
    )
    op.drop_index(
        op.f("ix_channel_switch_failures_customer_id"), table_name="channel_switch_failures"
    )
    op.drop_table("channel_switch_failures")
    op.drop_table("channel_stats")
