from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from streamward.db import Base, UTCDateTime, new_id, utcnow

SUPPORT_LEVELS = ("basic", "standard", "premium", "enterprise")
ANALYTICS_LEVELS = ("basic", "full", "premium")


class Organisation(Base):
    __tablename__ = "organisation"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    support_level: Mapped[str] = mapped_column(String(32), default="basic")
    analytics_level: Mapped[str] = mapped_column(String(32), default="basic")
    trial: Mapped[bool] = mapped_column(Boolean, default=False)
    packages: Mapped[list[str]] = mapped_column(JSON, default=list)
    webhook_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    webhook_secret_sealed: Mapped[str | None] = mapped_column(String(512), default=None)
    webhook_events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Set when the receiver answered 410 Gone: nothing is sent until the webhook is saved again.
    webhook_disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    vod_public: Mapped[bool] = mapped_column(Boolean, default=False)
    # The API key: SHA-256 for lookup, an AES-GCM copy for the audited reveal.
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_sealed: Mapped[str] = mapped_column(String(512))
    # The player key is embedded in public web pages; it identifies, it does not authorise.
    player_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def to_log(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name}
