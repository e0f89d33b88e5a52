"""The second factors of an account, and the short-lived challenges of the ceremonies that use them.

Factors belong to the account (the person), not to a membership: one authenticator serves every
organisation the person belongs to. ``account.mfa_enrolled`` says whether any usable factor exists;
it is kept in step by ``authn.mfa.factors`` in the transaction that adds or removes one, so the
credential look-up reads it from the row it already joins.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from streamward.db import Base, UTCDateTime, new_id, utcnow

# SecretBox purpose of a TOTP secret: sealed like the webhook secret, openable only as this column.
TOTP_SECRET_PURPOSE = "account.totp_secret"


class TotpFactor(Base):
    """An authenticator app (RFC 6238). Usable once confirmed with a first code."""

    __tablename__ = "totp_factor"
    __table_args__ = (Index("ix_totp_factor_account", "account_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    secret_sealed: Mapped[str] = mapped_column(String(255))
    # The time step of the last accepted code: a code is accepted only for a later step, so a code
    # seen once (shoulder-surfed, phished, replayed) is refused for the rest of its window.
    last_used_step: Mapped[int] = mapped_column(BigInteger, default=0)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Passkey(Base):
    """A WebAuthn credential registered by the account."""

    __tablename__ = "passkey"
    __table_args__ = (Index("ix_passkey_account", "account_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    # base64url of the credential id (at most 1023 bytes, so at most 1364 characters).
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # The authenticator's transports (["internal", "hybrid"...]), as a comma-separated list.
    transports: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class RecoveryCode(Base):
    """One single-use recovery code; only its keyed digest is stored."""

    __tablename__ = "recovery_code"
    __table_args__ = (UniqueConstraint("account_id", "code_hash"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginChallenge(Base):
    """A short-lived, single-use ceremony: the second step of a login ("mfa"), a passwordless
    passkey login ("passwordless") or a passkey registration ("passkey_registration").

    The id handed to the client is an opaque token; only its SHA-256 is stored. A challenge is bound
    to the client address that started it and, except for a passwordless login, to the account.
    """

    __tablename__ = "login_challenge"
    __table_args__ = (Index("ix_login_challenge_expires", "expires_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), default=None
    )
    # The second step of a login finishes the membership the password step chose.
    membership_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("membership.id", ondelete="CASCADE"), default=None
    )
    client_address: Mapped[str] = mapped_column(String(64))
    # base64url of the WebAuthn challenge bytes, when the ceremony may use a passkey.
    webauthn_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
