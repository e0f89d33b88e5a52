from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from streamward.db import Base, UTCDateTime, new_id, utcnow


class StreamState(StrEnum):
    CREATED = "created"
    LIVE = "live"
    ENDED = "ended"
    LOCKED = "locked"
    DELETED = "deleted"


class Stream(Base):
    """A stream record of an organisation. Deleting keeps the row (state ``deleted``) so that audit
    entries, VOD assets and old playback tokens still point at something."""

    __tablename__ = "stream"
    __table_args__ = (
        Index("ix_stream_org_id", "organisation_id", "id"),
        Index("ix_stream_org_state_id", "organisation_id", "state", "id"),
        Index("ix_stream_org_group", "organisation_id", "group_id"),
        # Anonymous players name a group by its id alone (the organisation that used it first).
        Index("ix_stream_group_id", "group_id", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    # Globally unique: media servers and players know a stream by its name alone.
    name: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=StreamState.CREATED)
    # Where an unlock returns to (created or ended); set only while locked.
    state_before_lock: Mapped[str | None] = mapped_column(String(16), default=None)
    group_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # The transcoded renditions, in order (the passthrough is the stream itself): one object each,
    # {id, profile, width, height, bitrate (kbps), fps, streamname, tags}; written once at creation.
    transcodes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # What the creator called the stream's type (bintu's `type`, e.g. "low-latency"); not interpreted.
    type: Mapped[str] = mapped_column(String(32), default="live", server_default="live")
    # Restream target (rtmp/rtmps), set with PUT /stream/{id}/push_url; checked like a webhook URL.
    push_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StreamTag(Base):
    """One tag on one stream. A tag exists while some stream carries it: there is no tag table."""

    __tablename__ = "stream_tag"
    __table_args__ = (Index("ix_stream_tag_org_tag", "organisation_id", "tag"),)

    stream_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("stream.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Denormalised from the stream so tag queries are scoped without a join.
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
