from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from streamward.db import Base, UTCDateTime, new_id, utcnow


class BintuSession(Base):
    """One bintu token. Valid while ``token_key`` equals the membership's current token key and it has not
    expired; the token itself is never stored, only its SHA-256."""

    __tablename__ = "session"
    __table_args__ = (
        Index("ix_session_membership", "membership_id"),
        Index("ix_session_expires", "expires_at"),  # housekeeping purges expired sessions by it
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    membership_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("membership.id", ondelete="CASCADE"))
    token_key: Mapped[str] = mapped_column(String(64))
    # A named long-lived token for automation has a name; a login session has none.
    name: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PasswordReset(Base):
    """A password-reset link: single use, short-lived; only the SHA-256 of its token is stored."""

    __tablename__ = "password_reset"
    __table_args__ = (Index("ix_password_reset_account", "account_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
