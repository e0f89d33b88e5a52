"""Accounts (people) and memberships (the "users" of an organisation, each with one role)."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from streamward.db import Base, UTCDateTime, new_id, utcnow


def normalise_email(email: str) -> str:
    """An email as stored and looked up. Lower-casing may lengthen it ("İ".lower() is two
    characters): check the length of the result, never of the input (``ColumnText`` with
    ``normalise=normalise_email`` does)."""
    return email.strip().lower()


def new_token_key() -> str:
    """The per-membership key every bintu token is issued under; replacing it ends them all."""
    return secrets.token_hex(16)


class Account(Base):
    __tablename__ = "account"
    # Email prefix search (``LIKE 'abc%'``): PostgreSQL uses a b-tree for LIKE only with the pattern
    # operator class (the unique index follows the database collation). SQLite searches by range on
    # the unique index instead (see users.service.email_prefix); there this index is a small duplicate.
    __table_args__ = (
        Index("ix_account_email_pattern", "email", postgresql_ops={"email": "text_pattern_ops"}),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Always stored lower-cased (see normalise_email), so a plain unique index is case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Whether the account has a usable second factor (a confirmed authenticator app or a passkey):
    # kept in step by authn.mfa.factors, read by every credential look-up and login.
    mfa_enrolled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "membership"
    __table_args__ = (
        UniqueConstraint("organisation_id", "account_id"),
        Index("ix_membership_org_role_id", "organisation_id", "role", "id"),
        # The users list, newest first: an index range scan at any depth.
        Index("ix_membership_org_id", "organisation_id", "id"),
        Index("ix_membership_account", "account_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id", ondelete="CASCADE"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(64))
    token_key: Mapped[str] = mapped_column(String(64), default=new_token_key)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
