"""Delivering outbox events to an organisation's webhook, one step at a time: the library that the
delivery worker (``streamward.worker``), the test event and the media servers' publish question use.

* ``claim`` leases a batch of due events in one statement: it selects them ``FOR UPDATE SKIP
  LOCKED`` (PostgreSQL; SQLite ignores the clause and has a single writer anyway), takes a lease
  (``locked_until``) and counts the attempt. Two workers never send the same attempt, and a worker
  killed mid-delivery only delays the event until its lease runs out; ``hand_back`` gives the
  leases of events not yet under way back at once, for another worker to take.
* ``load_targets`` reads the webhooks of a batch's organisations in one query.
* ``attempt`` renders one event, signs and sends it (no database work: it may take seconds), and
  ``record`` logs a batch of attempts and moves their events on in one transaction: delivered, tried
  again after a back-off, failed for good (audited), or skipped. A receiver answering 410 Gone
  disables the webhook.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from sqlalchemy import Integer, Update, all_, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import SYSTEM
from streamward.audit.service import record as record_audit
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
    if organisation is None:
        return None
    return _target(
        box,
        organisation.webhook_url,
        organisation.webhook_secret_sealed,
        organisation.webhook_events,
        organisation.webhook_disabled_at,
    )


async def load_targets(
    session: AsyncSession, box: SecretBox, organisation_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, WebhookTarget | None]:
    """The active webhook of each organisation (None: none, or disabled), in one query: the worker
    reads them once per claimed batch, not once per event."""
    targets: dict[uuid.UUID, WebhookTarget | None] = dict.fromkeys(organisation_ids)
    if not organisation_ids:
        return targets
    rows = await session.execute(
        select(
            Organisation.id,
            Organisation.webhook_url,
            Organisation.webhook_secret_sealed,
            Organisation.webhook_events,
            Organisation.webhook_disabled_at,
        ).where(Organisation.id.in_(list(organisation_ids)))
    )
    for organisation_id, url, secret_sealed, events, disabled_at in rows:
        targets[organisation_id] = _target(box, url, secret_sealed, events, disabled_at)
    return targets


def _target(
    box: SecretBox,
    url: str | None,
    secret_sealed: str | None,
    events: list[str] | None,
    disabled_at: datetime | None,
) -> WebhookTarget | None:
    if not url or disabled_at is not None:
        return None
    secret = box.open(secret_sealed, purpose=WEBHOOK_SECRET_PURPOSE) if secret_sealed else None
    return WebhookTarget(url, secret, frozenset(events or ()))


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
    """The delivery log's entry for one attempt, as an object (the test event adds it to its session)."""
    return WebhookDelivery(**attempt_values(event, url, outcome))


def _claim_statement(*, excluding: Literal["", "list", "array"]) -> Update:
    """The claim (see ``claim``), built once per shape with its values as parameters: building it
    anew for every claim cost four times what running it did (py-spy, bench/delivery.py). The
    organisations left out are a list expanded at each execution (SQLite), or one array parameter
    (PostgreSQL: the same SQL text whatever their number, and no expansion, which cost as much again
    as the rest of the claim's CPU)."""
    now = bindparam("now", type_=OutboxEvent.next_attempt_at.type)
    due = (
        select(OutboxEvent.id)
        .where(
            OutboxEvent.status == "pending",
            OutboxEvent.next_attempt_at <= now,
            or_(OutboxEvent.locked_until.is_(None), OutboxEvent.locked_until < now),
        )
        .order_by(OutboxEvent.next_attempt_at)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    if excluding == "list":
        due = due.where(OutboxEvent.organisation_id.not_in(bindparam("exclude", expanding=True)))
    elif excluding == "array":
        left_out = bindparam("exclude", type_=postgresql.ARRAY(OutboxEvent.organisation_id.type))
        due = due.where(OutboxEvent.organisation_id != all_(left_out))
    # MATERIALIZED: the locked selection is made once. Were PostgreSQL to fold it into the UPDATE,
    # it could run it again per row, skipping other rows each time and leasing more than ``limit``.
    picked = due.cte("picked").prefix_with("MATERIALIZED")
    return (
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(select(picked.c.id)))
        .values(
            locked_until=bindparam("lease_end", type_=OutboxEvent.locked_until.type),
            attempts=OutboxEvent.attempts + 1,
        )
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


_CLAIM = _claim_statement(excluding="")
_CLAIM_EXCLUDING_LIST = _claim_statement(excluding="list")
_CLAIM_EXCLUDING_ARRAY = _claim_statement(excluding="array")


async def claim(
    database: Database, limit: int, *, lease_seconds: float, exclude: Sequence[uuid.UUID] = ()
) -> list[ClaimedEvent]:
    """Lease up to ``limit`` due events, the longest due first, leaving out the organisations in
    ``exclude`` (the caller's way of bounding what it holds per organisation): one statement."""
    now = utcnow()
    values: dict[str, Any] = {"now": now, "lease_end": now + timedelta(seconds=lease_seconds), "limit": limit}
    statement = _CLAIM
    if exclude:
        statement = _CLAIM_EXCLUDING_LIST if database.is_sqlite else _CLAIM_EXCLUDING_ARRAY
        values["exclude"] = list(exclude)
    if database.is_sqlite:
        async with database.session() as session:  # BEGIN IMMEDIATE: SQLite's one writer, in turn
            rows = (await session.execute(statement, values)).all()
            await session.commit()
    else:
        # On PostgreSQL one statement is a transaction of its own: no BEGIN and COMMIT round trips.
        async with database.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            rows = (await autocommit.execute(statement, values)).all()
    # RETURNING keeps no order: in the order the events were created (their ids are time-ordered).
    return sorted((ClaimedEvent(*row) for row in rows), key=lambda event: event.id)


async def hand_back(database: Database, events: Sequence[ClaimedEvent]) -> None:
    """Clear the lease of claimed events nobody started sending, and give back the attempt each claim
    counted: another worker sends them at once, as the same attempt."""
    if not events:
        return
    statement = (
        update(OutboxEvent)
        .where(OutboxEvent.id == bindparam("event_id"), OutboxEvent.attempts == bindparam("claimed"))
        .values(locked_until=None, attempts=bindparam("given_back"))
    )
    async with database.session() as session:
        connection = await session.connection()
        await connection.execute(
            statement,
            [{"event_id": e.id, "claimed": e.attempt, "given_back": e.attempt - 1} for e in events],
        )
        await session.commit()


@dataclass(frozen=True)
class Attempt:
    """What became of one claimed event, to be recorded: sent to ``url`` with ``outcome``, or, with
    neither, skipped (no active webhook, or not subscribed): nothing was sent."""

    event: ClaimedEvent
    url: str | None = None
    outcome: SendOutcome | None = None


async def attempt(client: EgressClient, event: ClaimedEvent, target: WebhookTarget | None) -> Attempt:
    """Render, sign and send ``event`` to ``target`` (the organisation's webhook, read by the caller),
    when it wants the event. No database work: the caller records what came of it (``record``)."""
    if target is None or not wants(target, event.type):
        return Attempt(event)
    body, content_type = render(event)
    result = await send_signed(client, target, message_id=str(event.id), body=body, content_type=content_type)
    return Attempt(event, target.url, outcome_of(result))


# An event moves on only while the lease is ours: its attempt count is still the one our claim set.
_FINISH = (
    update(OutboxEvent)
    .where(OutboxEvent.id == bindparam("event_id"), OutboxEvent.attempts == bindparam("claimed"))
    .values(status=bindparam("final_status"), locked_until=None)
)
_RETRY_LATER = (
    update(OutboxEvent)
    .where(OutboxEvent.id == bindparam("event_id"), OutboxEvent.attempts == bindparam("claimed"))
    .values(next_attempt_at=bindparam("due"), locked_until=None)
)


async def record(database: Database, attempts: Sequence[Attempt]) -> None:
    """Log the attempts and move their events on, all in one transaction of a few statements whatever
    the number of attempts: delivered, tried again after a back-off, failed for good (audited), or
    skipped. A receiver that answered 410 Gone has its webhook disabled."""
    if not attempts:
        return
    now = utcnow()
    log_rows: list[dict[str, Any]] = []
    finished: list[dict[str, Any]] = []
    retried: list[dict[str, Any]] = []
    failed_for_good: list[Attempt] = []
    gone: dict[tuple[uuid.UUID, str], None] = {}  # (organisation, url) answered 410; ordered, no repeats
    for done in attempts:
        event, outcome = done.event, done.outcome
        moved = {"event_id": event.id, "claimed": event.attempt}
        if outcome is None or done.url is None:
            finished.append(moved | {"final_status": "skipped"})
            continue
        log_rows.append(attempt_values(event, done.url, outcome))
        if outcome.delivered:
            finished.append(moved | {"final_status": "delivered"})
        elif (delay := next_delay(event.attempt, outcome)) is not None:
            retried.append(moved | {"due": now + timedelta(seconds=delay)})
        else:
            finished.append(moved | {"final_status": "failed"})
            failed_for_good.append(done)
        if outcome.response_code == 410:
            gone[(event.organisation_id, done.url)] = None
    async with database.session() as session:
        # Core statements with many parameter sets: one INSERT and at most two UPDATEs (executemany,
        # which asyncpg pipelines) for the whole batch.
        connection = await session.connection()
        if log_rows:
            await connection.execute(insert(WebhookDelivery), log_rows)
        if finished:
            await connection.execute(_FINISH, finished)
        if retried:
            await connection.execute(_RETRY_LATER, retried)
        for failed in failed_for_good:
            assert failed.outcome is not None
            record_audit(
                session,
                SYSTEM,
                "webhook.delivery_failed",
                organisation_id=failed.event.organisation_id,
                target_type="event",
                target_id=failed.event.id,
                after={
                    "type": failed.event.type,
                    "attempts": failed.event.attempt,
                    "lastError": failed.outcome.reason,
                },
            )
        for organisation_id, url in gone:
            await _disable_webhook(session, organisation_id, url)
        await session.commit()


def attempt_values(event: ClaimedEvent, url: str, outcome: SendOutcome) -> dict[str, Any]:
    """The delivery log's columns for one attempt."""
    return {
        "organisation_id": event.organisation_id,
        "event_id": event.id,
        "event_type": event.type,
        "attempt": event.attempt,
        "status": outcome.status,
        "response_code": outcome.response_code,
        "duration_ms": outcome.duration_ms,
        "error": outcome.error,
        "url": url,
    }


async def _disable_webhook(session: AsyncSession, organisation_id: uuid.UUID, url: str) -> None:
    organisation = await session.get(Organisation, organisation_id, with_for_update=True)
    if (
        organisation is not None
        and organisation.webhook_url == url
        and organisation.webhook_disabled_at is None
    ):
        organisation.webhook_disabled_at = utcnow()
        record_audit(
            session,
            SYSTEM,
            "webhook.disabled",
            organisation_id=organisation_id,
            target_type="organisation",
            target_id=organisation_id,
            after={"reason": "the receiver answered 410 Gone", "url": url},
        )
