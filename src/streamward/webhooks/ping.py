"""*Send test event*: a signed ``webhook.test`` event sent now, its outcome shown to the caller at once.

The request's transaction ends before the event goes out (so far it has only authenticated the
caller): a receiver that takes its time must not hold the database's write lock (SQLite) or a
connection (PostgreSQL). The event and its delivery are then recorded in a second, short transaction,
the request's own commit. Nothing is written before sending, so a process that dies mid-send leaves
no half-recorded test event behind; the receiver may have seen it all the same, like any webhook.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authz.principal import Principal
from streamward.crypto import SecretBox
from streamward.db import end_transaction, new_id, utcnow
from streamward.egress.client import EgressClient
from streamward.events.models import OutboxEvent
from streamward.webhooks.deliveries import WebhookNotConfigured
from streamward.webhooks.delivery import (
    TEST_EVENT_TYPE,
    ClaimedEvent,
    attempt_row,
    load_target,
    render,
    send_signed,
)
from streamward.webhooks.outcome import SendOutcome, outcome_of


async def send_test_event(
    session: AsyncSession, principal: Principal, box: SecretBox, client: EgressClient
) -> tuple[OutboxEvent, SendOutcome]:
    """Send a signed test event and log it like any delivery (one attempt, never retried)."""
    target = await load_target(session, box, principal.organisation_id)
    if target is None:
        raise WebhookNotConfigured()
    await end_transaction(session)

    now = utcnow()
    event = OutboxEvent(
        id=new_id(),  # the webhook-id the receiver sees, and the id it is logged under afterwards
        organisation_id=principal.organisation_id,
        type=TEST_EVENT_TYPE,
        payload={"message": "Test event from Streamward", "requestedBy": principal.actor},
        attempts=1,
        created_at=now,
        next_attempt_at=now,
    )
    claimed = ClaimedEvent(event.id, event.organisation_id, event.type, event.payload, now, 1)
    body, content_type = render(claimed)
    result = await send_signed(client, target, message_id=str(event.id), body=body, content_type=content_type)

    outcome = outcome_of(result)
    event.status = "delivered" if outcome.delivered else "failed"
    session.add(event)
    session.add(attempt_row(claimed, target.url, outcome))
    await session.flush()
    return event, outcome
