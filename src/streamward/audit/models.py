from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from streamward.db import Base, UTCDateTime, new_id, utcnow


class AuditEntry(Base):
    """Who changed what, when, from where; written in the same transaction as the change. No secrets."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_org_id", "organisation_id", "id"),
        Index("ix_audit_entry_org_action_id", "organisation_id", "action", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # Null for events outside any organisation (a failed login with an unknown email).
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organisation.id", ondelete="CASCADE"), default=None
    )
    actor: Mapped[str] = mapped_column(
        String(80)
    )  # user:<membership id> | apikey | operator | system | anonymous
    actor_email: Mapped[str | None] = mapped_column(
        String(320), default=None
    )  # kept after the user is deleted
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32), default=None)
    target_id: Mapped[str | None] = mapped_column(String(80), default=None)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    client_address: Mapped[str | None] = mapped_column(String(64), default=None)
    # The X-Request-ID of the request that made it (None outside a request: the worker, the CLI).
    request_id: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
