from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from streamward.db import Base, UTCDateTime, new_id, utcnow

SOURCES = ("import", "recording")


class VodAsset(Base):
    """A video on demand: imported through the API, or recorded from a stream (Live Processing)."""

    __tablename__ = "vod_asset"
    __table_args__ = (
        Index("ix_vod_asset_org_id", "organisation_id", "id"),
        Index("ix_vod_asset_stream", "stream_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    stream_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("stream.id", ondelete="SET NULL"), default=None
    )
    title: Mapped[str] = mapped_column(String(200))
    duration_seconds: Mapped[float] = mapped_column(Float)
    url: Mapped[str] = mapped_column(String(2048))
    source: Mapped[str] = mapped_column(String(16), default="import")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
