"""``emit``: the one way a feature records an event. It joins the caller's transaction, so an event
exists exactly when the change that caused it was committed."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.db import Database, utcnow
from streamward.events.catalogue import EventType
from streamward.events.models import OutboxEvent

# Marks a session whose transaction queued events for delivery; read by the post-commit hook.
_PENDING = "streamward.outbox_pending"


def emit(
    session: AsyncSession, type: EventType, payload: dict[str, Any], *, organisation_id: uuid.UUID
) -> OutboxEvent:
    event = OutboxEvent(
        organisation_id=organisation_id,
        type=str(type),
        payload=payload,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    session.add(event)
    wake_after_commit(session)
    return event


def wake_after_commit(session: AsyncSession) -> None:
    """Ask for the in-process worker to be woken once this session's transaction commits (an event
    was queued or re-queued), rather than left to find it at its next poll."""
    session.info[_PENDING] = True


def queued_events(info: dict[Any, Any]) -> bool:
    """Whether the session with this ``info`` queued events for delivery (read by post-commit hooks;
    the wake-up hook, which runs after any installed before it, clears the mark)."""
    return bool(info.get(_PENDING, False))


def wake_on_commit(database: Database, wakeup: asyncio.Event) -> None:
    """Install the post-commit hook that sets ``wakeup`` after a transaction that queued events."""

    def hook(info: dict[Any, Any]) -> None:
        if info.pop(_PENDING, False):
            wakeup.set()

    database.after_commit(hook)
