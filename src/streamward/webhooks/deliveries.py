"""The delivery log and redelivery (each attempt is logged by delivery.py; the test event is ping.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped, scoped
from streamward.db import utcnow
from streamward.errors import Conflict
from streamward.events.models import OutboxEvent, WebhookDelivery
from streamward.events.outbox import wake_after_commit
from streamward.pagination import Page, keyset_page


class WebhookNotConfigured(Conflict):
    code = "webhook_not_configured"
    message = "The organisation has no active webhook."


async def list_deliveries(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    event_type: str | None,
    limit: int,
    cursor: str | None,
) -> Page[WebhookDelivery]:
    statement = scoped(select(WebhookDelivery), WebhookDelivery, principal)
    if status:
        statement = statement.where(WebhookDelivery.status == status)
    if event_type:
        statement = statement.where(WebhookDelivery.event_type == event_type)
    return await keyset_page(session, statement, WebhookDelivery.id, limit=limit, cursor=cursor)


async def redeliver(session: AsyncSession, principal: Principal, delivery_id: uuid.UUID) -> OutboxEvent:
    """Queue the delivery's event for one more attempt now; same event id, so receivers can dedupe."""
    delivery = await get_scoped(session, WebhookDelivery, delivery_id, principal, what="delivery")
    event = await get_scoped(
        session, OutboxEvent, delivery.event_id, principal, what="event", for_update=True
    )
    before = event.status
    event.status = "pending"
    event.next_attempt_at = utcnow()
    event.locked_until = None
    record(
        session,
        Actor.of(principal),
        "webhook.redelivered",
        organisation_id=principal.organisation_id,
        target_type="event",
        target_id=event.id,
        before={"status": before},
        after={"status": "pending"},
    )
    wake_after_commit(session)
    await session.flush()
    return event
