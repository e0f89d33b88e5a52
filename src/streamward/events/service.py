"""The delivery log, redelivery and test events (the worker itself is in delivery.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped, scoped
from streamward.crypto import SecretBox
from streamward.db import EMITTED, utcnow
from streamward.errors import Conflict
from streamward.events.delivery import TEST_EVENT_TYPE, ClaimedEvent, load_target, render, send_signed
from streamward.events.models import OutboxEvent, WebhookDelivery
from streamward.events.outbox import emit
from streamward.events.transport import EgressClient, SendResult
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
    session.info[EMITTED] = True
    await session.flush()
    return event


async def send_test_event(
    session: AsyncSession, principal: Principal, box: SecretBox, client: EgressClient
) -> tuple[OutboxEvent, SendResult]:
    """Send a signed test event now and log it like any delivery; the caller sees the outcome at once."""
    target = await load_target(session, box, principal.organisation_id)
    if target is None:
        raise WebhookNotConfigured()
    event = emit(
        session,
        TEST_EVENT_TYPE,
        {"message": "Test event from Streamward", "requestedBy": principal.actor},
        organisation_id=principal.organisation_id,
    )
    session.info.pop(EMITTED, None)  # sent right here, not by the worker
    event.attempts = 1
    await session.flush()
    claimed = ClaimedEvent(event.id, event.organisation_id, event.type, event.payload, event.created_at, 1)
    body, content_type = render(claimed)
    result = await send_signed(client, target, message_id=str(event.id), body=body, content_type=content_type)
    event.status = "delivered" if result.ok else "failed"
    session.add(
        WebhookDelivery(
            organisation_id=event.organisation_id,
            event_id=event.id,
            event_type=event.type,
            attempt=1,
            status="succeeded" if result.ok else ("refused" if result.refused else "failed"),
            response_code=result.status_code,
            duration_ms=result.duration_ms,
            error=None if result.ok else (result.error or f"HTTP {result.status_code}"),
            url=target.url,
        )
    )
    await session.flush()
    return event, result
