"""Webhook delivery: claim leases on outbox events, the delivery log, a flag for disabled webhooks.

Revision ID: 0005_delivery
Revises: 0002_audit
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_delivery"
down_revision: str | Sequence[str] | None = "0002_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_event") as batch:
        batch.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_event_org", "outbox_event", ["organisation_id", "id"], unique=False)
    with op.batch_alter_table("organisation") as batch:
        batch.add_column(sa.Column("webhook_disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["outbox_event.id"],
            name=op.f("fk_webhook_delivery_event_id_outbox_event"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_webhook_delivery_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
    )
    op.create_index("ix_webhook_delivery_event", "webhook_delivery", ["event_id"], unique=False)
    op.create_index("ix_webhook_delivery_org_id", "webhook_delivery", ["organisation_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_org_id", table_name="webhook_delivery")
    op.drop_index("ix_webhook_delivery_event", table_name="webhook_delivery")
    op.drop_table("webhook_delivery")
    with op.batch_alter_table("organisation") as batch:
        batch.drop_column("webhook_disabled_at")
    op.drop_index("ix_outbox_event_org", table_name="outbox_event")
    with op.batch_alter_table("outbox_event") as batch:
        batch.drop_column("locked_until")
