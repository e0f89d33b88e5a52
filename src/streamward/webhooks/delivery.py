"""The delivery worker: claims outbox events, sends them signed to the organisation's webhook,
records every attempt, and schedules retries.

Claiming selects due events ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite ignores the clause and
has a single writer anyway), then in the same transaction takes a lease (``locked_until``) and counts
the attempt: two workers never send the same attempt, and a worker killed mid-delivery only delays
the event until its lease runs out. A worker that is stopped (SIGTERM) finishes the sends under way and
hands back, at once, the events it claimed but has not started sending: another worker takes them
without waiting for the lease.

A slow or dead receiver of one organisation does not hold up another's: each organisation has its
own concurrency limit, and organisations at their limit are left out of the next claim.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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
from streamward.housekeeping import run_periodically
from streamward.orgs.models import Organisation
from streamward.runtime import Runtime
from streamward.schemas import format_utc
from streamward.webhooks.signing import signature_headers

log = logging.getLogger(__name__)

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


def is_retryable(result: SendResult) -> bool:
    if result.refused:
        return False
    if result.status_code is None:  # timeout or connection error
        return True
    return result.status_code == 429 or result.status_code >= 500


def next_delay(attempt: int, result: SendResult) -> float | None:
    """Seconds until the next attempt after ``attempt`` failed, or None when it was the last."""
    if attempt >= MAX_ATTEMPTS or not is_retryable(result):
        return None
    delay = float(BACKOFF_SECONDS[attempt])
    if result.retry_after_seconds is not None:
        delay = max(delay, min(result.retry_after_seconds, MAX_RETRY_AFTER_SECONDS))
    return delay


def describe(result: SendResult) -> str:
    if result.error:
        return result.error
    return f"HTTP {result.status_code}"


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


@dataclass
class WorkerOptions:
    poll_interval_seconds: float = 0.2
    concurrency: int = 32
    per_organisation_concurrency: int = 4
    batch_size: int = 32
    lease_seconds: float = 300.0
    # Housekeeping (streamward.housekeeping) every this many seconds while running; 0: never.
    housekeeping_interval_seconds: float = 0.0
    retention_days: int = 30


@dataclass
class DeliveryWorker:
    database: Database
    box: SecretBox
    client: EgressClient
    options: WorkerOptions = field(default_factory=WorkerOptions)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    # Claimed and not finished, per organisation; `claim` takes no more than the free slots.
    _per_organisation: Counter[uuid.UUID] = field(default_factory=Counter)
    # Claimed (leased, attempt counted) and not yet under way: handed back when the worker stops.
    _unsent: dict[uuid.UUID, ClaimedEvent] = field(default_factory=dict)
    _tasks: dict[uuid.UUID, asyncio.Task[None]] = field(default_factory=dict)
    # Told of every attempt's outcome and duration in seconds (the web process's metrics).
    observe_attempt: Callable[[str, float | None], None] | None = None
    # time.monotonic() of the loop's last turn while running, else None: /readyz reads it.
    last_heartbeat: float | None = None

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker started")
        housekeeping = None
        if self.options.housekeeping_interval_seconds > 0:
            housekeeping = asyncio.create_task(
                run_periodically(
                    self.database,
                    retention_days=self.options.retention_days,
                    interval_seconds=self.options.housekeeping_interval_seconds,
                    stop=stop,
                )
            )
        try:
            while not stop.is_set():
                self.last_heartbeat = time.monotonic()
                claimed = await self._claim_and_start()
                if claimed:
                    continue
                await self._idle(stop)
        finally:
            self.last_heartbeat = None
            await self._hand_back_unsent()
            if self._in_flight:  # sends under way finish (each within the webhook timeout)
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            if housekeeping is not None:
                await housekeeping  # stops between two batches
            log.info("delivery worker stopped")

    async def _hand_back_unsent(self) -> None:
        """Clear the lease of every event claimed here and not yet under way, and give back the
        attempt the claim counted: another worker sends it at once, as the same attempt."""
        unsent = list(self._unsent.values())
        if not unsent:
            return
        waiting = [self._tasks[event.id] for event in unsent if event.id in self._tasks]
        for task in waiting:
            task.cancel()  # it has not sent anything: it is only reading the webhook config
        await asyncio.gather(*waiting, return_exceptions=True)
        try:
            async with self.database.session() as session:
                for event in unsent:
                    await session.execute(
                        update(OutboxEvent)
                        .where(OutboxEvent.id == event.id, OutboxEvent.attempts == event.attempt)
                        .values(locked_until=None, attempts=event.attempt - 1)
                        .execution_options(synchronize_session=False)
                    )
                await session.commit()
        except Exception:
            log.exception("could not hand back %d claimed events; their leases will run out", len(unsent))
        else:
            log.info("handed back %d claimed events not yet sent", len(unsent))

    async def drain(self) -> int:
        """Deliver everything due now, the way ``run`` does, and return once nothing is due or in
        flight (tests, benchmarks). Returns the number of events claimed."""
        total = 0
        while True:
            claimed = await self._claim_and_start()
            total += claimed
            if self._in_flight:
                await asyncio.wait(list(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
            elif not claimed:
                return total

    async def _idle(self, stop: asyncio.Event) -> None:
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.wakeup.wait()),
            asyncio.ensure_future(stop.wait()),
        ]
        waiters += list(self._in_flight)  # a finished delivery frees a slot: claim again
        try:
            await asyncio.wait(
                waiters, timeout=self.options.poll_interval_seconds, return_when="FIRST_COMPLETED"
            )
        finally:
            for waiter in waiters[:2]:
                waiter.cancel()
        self.wakeup.clear()

    async def _claim_and_start(self) -> int:
        free = self.options.concurrency - len(self._in_flight)
        if free <= 0:
            return 0
        saturated = [
            org
            for org, count in self._per_organisation.items()
            if count >= self.options.per_organisation_concurrency
        ]
        try:
            events = await self.claim(min(free, self.options.batch_size), exclude=saturated)
        except Exception:
            log.exception("claiming outbox events failed; retrying")
            return 0
        for event in events:
            self._per_organisation[event.organisation_id] += 1
            task = asyncio.create_task(self._deliver_and_release(event))
            self._in_flight.add(task)
            self._tasks[event.id] = task
            task.add_done_callback(self._in_flight.discard)
        return len(events)

    async def _deliver_and_release(self, event: ClaimedEvent) -> None:
        try:
            await self.deliver(event)
        except Exception:
            log.exception(
                "delivering event %s failed unexpectedly; it will be retried after its lease", event.id
            )
        finally:
            self._tasks.pop(event.id, None)
            self._unsent.pop(event.id, None)
            self._per_organisation[event.organisation_id] -= 1
            if self._per_organisation[event.organisation_id] <= 0:
                del self._per_organisation[event.organisation_id]

    async def claim(self, limit: int, *, exclude: list[uuid.UUID] | None = None) -> list[ClaimedEvent]:
        """Lease up to ``limit`` due events, at most as many per organisation as it has free slots here."""
        now = utcnow()
        candidates = (
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
            candidates = candidates.where(OutboxEvent.organisation_id.not_in(exclude))
        async with self.database.session() as session:
            picked: list[uuid.UUID] = []
            taken: Counter[uuid.UUID] = Counter()
            for event_id, organisation_id in (await session.execute(candidates)).all():
                free = self.options.per_organisation_concurrency - self._per_organisation[organisation_id]
                if taken[organisation_id] < free:
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
                .values(
                    locked_until=now + timedelta(seconds=self.options.lease_seconds),
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
            rows = (await session.execute(statement)).all()
            await session.commit()
        claimed = [ClaimedEvent(*row) for row in rows]
        self._unsent.update((event.id, event) for event in claimed)
        return claimed

    async def deliver(self, event: ClaimedEvent) -> None:
        async with self.database.session(write=False) as session:
            target = await load_target(session, self.box, event.organisation_id)
        # From here on the attempt is under way: a stopping worker lets it finish.
        self._unsent.pop(event.id, None)
        if target is None or not wants(target, event.type):
            await self._finish(event, status="skipped")
            if self.observe_attempt is not None:
                self.observe_attempt("skipped", None)
            return
        body, content_type = render(event)
        result = await send_signed(
            self.client, target, message_id=str(event.id), body=body, content_type=content_type
        )
        await self.record_attempt(event, target.url, result)
        if self.observe_attempt is not None:
            outcome = "succeeded" if result.ok else ("refused" if result.refused else "failed")
            self.observe_attempt(outcome, result.duration_ms / 1000)

    async def record_attempt(self, event: ClaimedEvent, url: str, result: SendResult) -> None:
        """Log the attempt and move the event on, in one transaction, only while the lease is ours."""
        async with self.database.session() as session:
            session.add(
                WebhookDelivery(
                    organisation_id=event.organisation_id,
                    event_id=event.id,
                    event_type=event.type,
                    attempt=event.attempt,
                    status="succeeded" if result.ok else ("refused" if result.refused else "failed"),
                    response_code=result.status_code,
                    duration_ms=result.duration_ms,
                    error=None if result.ok else describe(result),
                    url=url,
                )
            )
            values: dict[str, Any] = {"locked_until": None}
            if result.ok:
                values["status"] = "delivered"
            elif (delay := next_delay(event.attempt, result)) is not None:
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
                    after={"type": event.type, "attempts": event.attempt, "lastError": describe(result)},
                )
            if result.status_code == 410:
                await self._disable_webhook(session, event.organisation_id, url)
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == event.id, OutboxEvent.attempts == event.attempt)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    async def _disable_webhook(self, session: Any, organisation_id: uuid.UUID, url: str) -> None:
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

    async def _finish(self, event: ClaimedEvent, *, status: str) -> None:
        async with self.database.session() as session:
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == event.id, OutboxEvent.attempts == event.attempt)
                .values(status=status, locked_until=None)
                .execution_options(synchronize_session=False)
            )
            await session.commit()


def worker_for(
    runtime: Runtime, *, observe_attempt: Callable[[str, float | None], None] | None = None
) -> DeliveryWorker:
    settings = runtime.settings
    return DeliveryWorker(
        database=runtime.database,
        box=runtime.secret_box,
        client=runtime.egress,
        options=WorkerOptions(
            poll_interval_seconds=settings.worker_poll_interval_seconds,
            concurrency=settings.worker_concurrency,
            per_organisation_concurrency=settings.worker_per_organisation_concurrency,
            housekeeping_interval_seconds=settings.housekeeping_interval_seconds,
            retention_days=settings.retention_days,
        ),
        wakeup=runtime.outbox_wakeup,
        observe_attempt=observe_attempt,
    )
