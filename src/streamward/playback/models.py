from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from streamward.db import Base, UTCDateTime, new_id, utcnow


class PlaybackSigningKey(Base):
    """An organisation's Ed25519 key for playback tokens. One is active (signs); after a rotation the
    old one is retired (verifies only) until revoked. The private half is sealed with the SecretBox."""

    __tablename__ = "playback_signing_key"
    __table_args__ = (Index("ix_playback_signing_key_org_id", "organisation_id", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[str] = mapped_column(String(64))  # raw 32 bytes, base64url (the JWK "x")
    private_key_sealed: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # No token signed with this key expires later than this (kept an upper bound, refreshed at most
    # hourly): a retired key is published in the JWKS until then.
    tokens_expire_by: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class PlaybackRevocation(Base):
    """A revoked (revocable) playback token, kept until the token cannot verify anyway: past its
    expiry (``expires_at``) plus the verification leeway (``service.REVOCATION_KEPT_AFTER_EXP_SECONDS``)."""

    __tablename__ = "playback_revocation"
    __table_args__ = (Index("ix_playback_revocation_expires", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
