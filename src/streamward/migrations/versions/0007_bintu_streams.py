"""bintu stream API: stream type and restream target, transcodes as rendition objects, the player
key's digest for lookup, and the organisation's "playback token required for player reads" flag.

Revision ID: 0007_bintu_streams
Revises: 0006_merge
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007_bintu_streams"
down_revision: str | Sequence[str] | None = "0006_merge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The profiles of the first stream API ("720p"...), as renditions: their size, a usual bitrate (kbps)
# and frame rate. Their stream names stay "<name>-<profile>", as they were played out before.
_LEGACY_PROFILES = {
    "1080p": (1920, 1080, 4500, 30),
    "720p": (1280, 720, 2500, 30),
    "480p": (854, 480, 1200, 30),
    "360p": (640, 360, 800, 30),
    "240p": (426, 240, 400, 30),
}

_organisation = sa.table(
    "organisation",
    sa.column("id", sa.Uuid()),
    sa.column("player_key", sa.String()),
    sa.column("player_key_hash", sa.String()),
)
_stream = sa.table(
    "stream", sa.column("id", sa.Uuid()), sa.column("name", sa.String()), sa.column("transcodes", sa.JSON())
)


def _rendition(stream_name: str, profile: str) -> dict[str, Any]:
    width, height, bitrate, fps = _LEGACY_PROFILES.get(profile, (0, 0, 0, 0))
    return {
        "id": str(uuid.uuid4()),
        "profile": profile,
        "width": width,
        "height": height,
        "bitrate": bitrate,
        "fps": fps,
        "streamname": f"{stream_name}-{profile}",
        "tags": [],
    }


def upgrade() -> None:
    # Columns are only added, never altered: on SQLite, altering makes Alembic copy the table, and
    # dropping the old organisation table would cascade (foreign keys are on) to every stream.
    connection = op.get_bind()
    op.add_column("stream", sa.Column("type", sa.String(length=32), server_default="live", nullable=False))
    op.add_column("stream", sa.Column("push_url", sa.String(length=2048), nullable=True))
    for stream_id, name, transcodes in connection.execute(sa.select(_stream)).all():
        if transcodes and any(isinstance(entry, str) for entry in transcodes):
            renditions = [
                _rendition(name, entry) if isinstance(entry, str) else entry for entry in transcodes
            ]
            connection.execute(
                _stream.update().where(_stream.c.id == stream_id).values(transcodes=renditions)
            )

    # Filled right below; the empty default only lets the column be added NOT NULL to existing rows.
    op.add_column(
        "organisation",
        sa.Column("player_key_hash", sa.String(length=64), server_default="", nullable=False),
    )
    op.add_column(
        "organisation",
        sa.Column("player_token_required", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    for organisation_id, player_key, _ in connection.execute(sa.select(_organisation)).all():
        connection.execute(
            _organisation.update()
            .where(_organisation.c.id == organisation_id)
            .values(player_key_hash=hashlib.sha256(player_key.encode()).hexdigest())
        )
    if connection.dialect.name != "sqlite":  # SQLite cannot drop a default without copying the table
        op.alter_column("organisation", "player_key_hash", server_default=None)
    op.create_index("ix_organisation_player_key_hash", "organisation", ["player_key_hash"], unique=True)


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), for the same reason as above.
    connection = op.get_bind()
    op.drop_index("ix_organisation_player_key_hash", table_name="organisation")
    op.drop_column("organisation", "player_token_required")
    op.drop_column("organisation", "player_key_hash")
    # Back to the first API's list of profile names (bintu profiles keep their names).
    for stream_id, _, transcodes in connection.execute(sa.select(_stream)).all():
        if transcodes:
            names = [entry["profile"] if isinstance(entry, dict) else entry for entry in transcodes]
            connection.execute(_stream.update().where(_stream.c.id == stream_id).values(transcodes=names))
    op.drop_column("stream", "push_url")
    op.drop_column("stream", "type")
