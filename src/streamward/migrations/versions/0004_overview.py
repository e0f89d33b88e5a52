"""Organisation overview: streams and their tags, VOD assets, playback signing keys and revocations.

Revision ID: 0004_overview
Revises: 0002_audit
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_overview"
down_revision: str | Sequence[str] | None = "0002_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("state_before_lock", sa.String(length=16), nullable=True),
        sa.Column("group_id", sa.String(length=64), nullable=True),
        sa.Column("transcodes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_stream_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream")),
        sa.UniqueConstraint("name", name=op.f("uq_stream_name")),
    )
    op.create_index("ix_stream_org_id", "stream", ["organisation_id", "id"], unique=False)
    op.create_index("ix_stream_org_state_id", "stream", ["organisation_id", "state", "id"], unique=False)
    op.create_index("ix_stream_org_group", "stream", ["organisation_id", "group_id"], unique=False)

    op.create_table(
        "stream_tag",
        sa.Column("stream_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_stream_tag_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"], ["stream.id"], name=op.f("fk_stream_tag_stream_id_stream"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("stream_id", "tag", name=op.f("pk_stream_tag")),
    )
    op.create_index("ix_stream_tag_org_tag", "stream_tag", ["organisation_id", "tag"], unique=False)

    op.create_table(
        "vod_asset",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("stream_id", sa.Uuid(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_vod_asset_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"], ["stream.id"], name=op.f("fk_vod_asset_stream_id_stream"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vod_asset")),
    )
    op.create_index("ix_vod_asset_org_id", "vod_asset", ["organisation_id", "id"], unique=False)
    op.create_index("ix_vod_asset_stream", "vod_asset", ["stream_id"], unique=False)

    op.create_table(
        "playback_signing_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("private_key_sealed", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tokens_expire_by", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_playback_signing_key_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playback_signing_key")),
        sa.UniqueConstraint("kid", name=op.f("uq_playback_signing_key_kid")),
    )
    op.create_index(
        "ix_playback_signing_key_org_id", "playback_signing_key", ["organisation_id", "id"], unique=False
    )

    op.create_table(
        "playback_revocation",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("organisation_id", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_playback_revocation_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_playback_revocation")),
    )
    op.create_index("ix_playback_revocation_expires", "playback_revocation", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_playback_revocation_expires", table_name="playback_revocation")
    op.drop_table("playback_revocation")
    op.drop_index("ix_playback_signing_key_org_id", table_name="playback_signing_key")
    op.drop_table("playback_signing_key")
    op.drop_index("ix_vod_asset_stream", table_name="vod_asset")
    op.drop_index("ix_vod_asset_org_id", table_name="vod_asset")
    op.drop_table("vod_asset")
    op.drop_index("ix_stream_tag_org_tag", table_name="stream_tag")
    op.drop_table("stream_tag")
    op.drop_index("ix_stream_org_group", table_name="stream")
    op.drop_index("ix_stream_org_state_id", table_name="stream")
    op.drop_index("ix_stream_org_id", table_name="stream")
    op.drop_table("stream")
