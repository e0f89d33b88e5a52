from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, String, false
from sqlalchemy.orm import Mapped, mapped_column, validates

from streamward.authz.principal import Principal
from streamward.crypto import digest
from streamward.db import Base, UTCDateTime, new_id, utcnow

SUPPORT_LEVELS = ("basic", "standard", "premium", "enterprise")
ANALYTICS_LEVELS = ("basic", "full", "premium")


class Organisation(Base):
    __tablename__ = "organisation"
    __table_args__ = (Index("ix_organisation_player_key_hash", "player_key_hash", unique=True),)

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
    # Players present the key (X-BINTU-PLAYERKEY); it is looked up by its SHA-256, like the API
    # key, so the lookup is an index probe on a digest, not a comparison with the key itself.
    # Kept in step with player_key by the validator below, whoever sets the key.
    player_key_hash: Mapped[str] = mapped_column(String(64))
    # Secure Playback: anonymous and player-key reads of stream info need a playback token.
    player_token_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Every member needs a second factor: one without gets only an enrolment session.
    mfa_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @validates("player_key")
    def _hash_player_key(self, _: str, value: str) -> str:
        self.player_key_hash = digest(value)
        return value

    def to_log(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name}


def organisation_of(principal: Principal) -> Organisation:
    """The organisation row a Principal was authenticated against (the access core types it only by
    its id and name)."""
    organisation = principal.organisation
    assert isinstance(organisation, Organisation)
    return organisation
