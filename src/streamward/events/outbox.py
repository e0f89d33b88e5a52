"""``emit``: the one way a feature records an event. It joins the caller's transaction, so an event
exists exactly when the change that caused it was committed."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.db import EMITTED, utcnow
from streamward.events.models import OutboxEvent


def emit(
    session: AsyncSession, type: str, payload: dict[str, Any], *, organisation_id: uuid.UUID
) -> OutboxEvent:
    event = OutboxEvent(
        organisation_id=organisation_id,
        type=type,
        payload=payload,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(event)
    # Read by the request's session dependency after commit, to wake the in-process worker.
    session.info[EMITTED] = True
    return event
