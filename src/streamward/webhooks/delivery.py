"""Delivering outbox events to an organisation's webhook, one step at a time: the library that the
delivery worker (``streamward.worker``), the test event and the media servers' publish question use.

* ``claim`` leases due events: it selects them ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite ignores
  the clause and has a single writer anyway), then in the same transaction takes a lease
  (``locked_until``) and counts the attempt. Two workers never send the same attempt, and a worker
  killed mid-delivery only delays the event until its lease runs out; ``hand_back`` gives the leases
  of events not yet under way back at once, for another worker to take.
* ``deliver`` renders the event, signs and sends it, and ``record_attempt`` logs the attempt and moves
  the event on: delivered, tried again after a back-off, or failed for good (audited). A receiver
  answering 410 Gone disables the webhook.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import SYSTEM, record
from streamward.crypto import SecretBox
from streamward.db import Database, utcnow
from streamward.egress.client import EgressClient, SendResult
from streamward.events.catalogue import FORM_ENCODED, EventType
from streamward.events.models import OutboxEvent, WebhookDelivery
from streamward.orgs.models import Organisation
from streamward.schemas import format_utc
from streamward.webhooks.outcome import SendOutcome, outcome_of
from streamward.webhooks.signing import signature_headers

# Delay before attempt 1, 2, ... 8: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
BACKOFF_SECONDS = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_ATTEMPTS = len(BACKOFF_SECONDS)
MAX_RETRY_AFTER_SECONDS = 24 * 3600
WEBHOOK_SECRET_PURPOSE = "organisation.webhook_secret"

# Stream events from media servers go out in the documented form encoding, always (the webhook exists
# for them); everything else is a JSON management event, sent only when subscribed.
FORM_EVENT_TYPES = frozenset(event.value for event in FORM_ENCODED)
TEST_EVENT_TYPE = EventType.WEBHOOK_TEST.value


@dataclass(frozen=True)
class ClaimedEvent:
    id: uuid.UUID
    organisation_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    created_at: datetime
    attempt: int


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str | None
    events: frozenset[str]


def wants(target: WebhookTarget, event_type: str) -> bool:
    return event_type in FORM_EVENT_TYPES or event_type == TEST_EVENT_TYPE or event_type in target.events


def render(event: ClaimedEvent) -> tuple[bytes, str]:
    """The request body and its content type."""
    if event.type in FORM_EVENT_TYPES:
        fields = {str(k): str(v) for k, v in event.payload.get("fields", {}).items()}
        return urlencode(fields).encode(), "application/x-www-form-urlencoded"
    body = {
        "id": str(event.id),
        "type": event.type,
        "createdAt": format_utc(event.created_at),
        "organisationId": str(event.organisation_id),
        "data": event.payload,
    }
    return json.dumps(body, separators=(",", ":")).encode(), "application/json"


def next_delay(attempt: int, outcome: SendOutcome) -> float | None:
    """Seconds until the next attempt after ``attempt`` failed, or None when it was the last."""
    if attempt >= MAX_ATTEMPTS or not outcome.retryable:
        return None
    delay = float(BACKOFF_SECONDS[attempt])
    if outcome.retry_after_seconds is not None:
        delay = max(delay, min(outcome.retry_after_seconds, MAX_RETRY_AFTER_SECONDS))
    return delay


async def load_target(
    session: AsyncSession, box: SecretBox, organisation_id: uuid.UUID
) -> WebhookTarget | None:
    organisation = await session.get(Organisation, organisation_id)
    if organisation is None or not organisation.webhook_url or organisation.webhook_disabled_at is not None:
        return None
    secret = (
        box.open(organisation.webhook_secret_sealed, purpose=WEBHOOK_SECRET_PURPOSE)
        if organisation.webhook_secret_sealed
        else None
    )
    return WebhookTarget(organisation.webhook_url, secret, frozenset(organisation.webhook_events or ()))


async def send_signed(
    client: EgressClient,
    target: WebhookTarget,
    *,
    message_id: str,
    body: bytes,
    content_type: str,
    timeout_seconds: float | None = None,
) -> SendResult:
    if not target.secret:
        return SendResult(None, 0, error="the webhook has no signing secret", refused=True)
    headers = {"content-type": content_type}
    headers |= signature_headers(target.secret, message_id, int(time.time()), body)
    return await client.post(target.url, content=body, headers=headers, timeout_seconds=timeout_seconds)


def attempt_row(event: ClaimedEvent, url: str, outcome: SendOutcome) -> WebhookDelivery:
    """The delivery log's entry for one attempt."""
    return WebhookDelivery(
        organisation_id=event.organisation_id,
        event_id=event.id,
        event_type=event.type,
        attempt=event.attempt,
        status=outcome.status,
        response_code=outcome.response_code,
        duration_ms=outcome.duration_ms,
        error=outcome.error,
        url=url,
    )


async def claim(
    database: Database,
    limit: int,
    *,
    lease_seconds: float,
    room: Callable[[uuid.UUID], int],
    exclude: Sequence[uuid.UUID] = (),
) -> list[ClaimedEvent]:
    """Lease up to ``limit`` due events, at most ``room(organisation)`` of each organisation's (the
    caller's free slots for it), leaving out the organisations in ``exclude``."""
    now = utcnow()
    due = (
        select(OutboxEvent.id, OutboxEvent.organisation_id)
        .where(
            OutboxEvent.status == "pending",
            OutboxEvent.next_attempt_at <= now,
            or_(OutboxEvent.locked_until.is_(None), OutboxEvent.locked_until < now),
        )
        .order_by(OutboxEvent.next_attempt_at)
        .limit(limit * 4)
        .with_for_update(skip_locked=True)
    )
    if exclude:
        due = due.where(OutboxEvent.organisation_id.not_in(exclude))
    async with database.session() as session:
        picked: list[uuid.UUID] = []
        taken: Counter[uuid.UUID] = Counter()
        for event_id, organisation_id in (await session.execute(due)).all():
            if taken[organisation_id] < room(organisation_id):
                taken[organisation_id] += 1
                picked.append(event_id)
                if len(picked) == limit:
                    break
        if not picked:
            await session.rollback()
            return []
        statement = (
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(picked))
            .values(locked_until=now + timedelta(seconds=lease_seconds), attempts=OutboxEvent.attempts + 1)
            .returning(
                OutboxEvent.id,
                OutboxEvent.organisation_id,
                OutboxEvent.type,
                OutboxEvent.payload,
                OutboxEvent.created_at,
                OutboxEvent.attempts,
            )
            .execution_options(synchronize_session=False)
        )
        rows = (await session.execute(statement)).all()
        await session.commit()
    return [ClaimedEvent(*row) for row in rows]


async def hand_back(database: Database, events: Sequence[ClaimedEvent]) -> None:
    """Clear the lease of claimed events nobody started sending, and give back the attempt each claim
    counted: another worker sends them at once, as the same attempt."""
    async with database.session() as session:
        for event in events:
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == event.id, OutboxEvent.attempts == event.attempt)
                .values(locked_until=None, attempts=event.attempt - 1)
                .execution_options(synchronize_session=False)
            )
        await session.commit()


async def deliver(
    database: Database, client: EgressClient, event: ClaimedEvent, target: WebhookTarget | None
) -> SendOutcome | None:
    """One attempt at ``event`` (``target``: the organisation's webhook, read by the caller), recorded;
    None when there was nothing to send (no active webhook, or not subscribed): the event is skipped."""
    if target is None or not wants(target, event.type):
        await finish(database, event, status="skipped")
        return None
    body, content_type = render(event)
    result = await send_signed(client, target, message_id=str(event.id), body=body, content_type=content_type)
    return await record_attempt(database, event, target.url, result)


async def record_attempt(
    database: Database, event: ClaimedEvent, url: str, result: SendResult
) -> SendOutcome:
    """Log the attempt and move the event on, in one transaction, only while the lease is ours."""
    outcome = outcome_of(result)
    async with database.session() as session:
        session.add(attempt_row(event, url, outcome))
        values: dict[str, Any] = {"locked_until": None}
        if outcome.delivered:
            values["status"] = "delivered"
        elif (delay := next_delay(event.attempt, outcome)) is not None:
            values["next_attempt_at"] = utcnow() + timedelta(seconds=delay)
        else:
            values["status"] = "failed"
            record(
                session,
                SYSTEM,
                "webhook.delivery_failed",
                organisation_id=event.organisation_id,
                target_type="event",
                target_id=event.id,
                after={"type": event.type, "attempts": event.attempt, "lastError": outcome.reason},
            )
        if outcome.response_code == 410:
            await _disable_webhook(session, event.organisation_id, url)
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event.id, OutboxEvent.attempts == event.attempt)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return outcome


async def _disable_webhook(session: AsyncSession, organisation_id: uuid.UUID, url: str) -> None:
    organisation = await session.get(Organisation, organisation_id, with_for_update=True)
    if (
        organisation is not None
        and organisation.webhook_url == url
        and organisation.webhook_disabled_at is None
    ):
        organisation.webhook_disabled_at = utcnow()
        record(
            session,
            SYSTEM,
            "webhook.disabled",
            organisation_id=organisation_id,
            target_type="organisation",
            target_id=organisation_id,
            after={"reason": "the receiver answered 410 Gone", "url": url},
        )


async def finish(database: Database, event: ClaimedEvent, *, status: str) -> None:
    async with database.session() as session:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event.id, OutboxEvent.attempts == event.attempt)
            .values(status=status, locked_until=None)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
