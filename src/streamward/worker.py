"""The delivery worker: a loop that keeps claiming due outbox events and delivering them, each step
done by the delivery library (``streamward.webhooks.delivery``), with housekeeping beside it.

A slow or dead receiver of one organisation does not hold up another's: each organisation has its
own concurrency limit, and organisations at their limit are left out of the next claim. A worker
that is stopped (SIGTERM) finishes the sends under way and hands back, at once, the events it claimed
but has not started sending: another worker takes them without waiting for their lease to run out.

It runs in the web process (``STREAMWARD_RUN_WORKER``, wired by the app) or alone (``streamward
worker``); both build it with ``worker_for``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from streamward.crypto import SecretBox
from streamward.db import Database
from streamward.egress.client import EgressClient
from streamward.housekeeping import run_periodically
from streamward.runtime import Runtime
from streamward.webhooks import delivery
from streamward.webhooks.delivery import ClaimedEvent

log = logging.getLogger(__name__)


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
        housekeeping = self._start_housekeeping(stop)
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

    def _start_housekeeping(self, stop: asyncio.Event) -> asyncio.Task[None] | None:
        if self.options.housekeeping_interval_seconds <= 0:
            return None
        return asyncio.create_task(
            run_periodically(
                self.database,
                retention_days=self.options.retention_days,
                interval_seconds=self.options.housekeeping_interval_seconds,
                stop=stop,
            )
        )

    async def _hand_back_unsent(self) -> None:
        """Stopping: the events claimed here and not yet under way go back at once, for another worker."""
        unsent = list(self._unsent.values())
        if not unsent:
            return
        waiting = [self._tasks[event.id] for event in unsent if event.id in self._tasks]
        for task in waiting:
            task.cancel()  # it has not sent anything: it is only reading the webhook config
        await asyncio.gather(*waiting, return_exceptions=True)
        try:
            await delivery.hand_back(self.database, unsent)
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

    def _room(self, organisation_id: uuid.UUID) -> int:
        """How many more of the organisation's events this worker may take on now."""
        return self.options.per_organisation_concurrency - self._per_organisation[organisation_id]

    async def claim(self, limit: int, *, exclude: list[uuid.UUID] | None = None) -> list[ClaimedEvent]:
        """Lease up to ``limit`` due events, at most as many per organisation as it has free slots here."""
        claimed = await delivery.claim(
            self.database,
            limit,
            lease_seconds=self.options.lease_seconds,
            room=self._room,
            exclude=exclude or (),
        )
        self._unsent.update((event.id, event) for event in claimed)
        return claimed

    async def deliver(self, event: ClaimedEvent) -> None:
        async with self.database.session(write=False) as session:
            target = await delivery.load_target(session, self.box, event.organisation_id)
        # From here on the attempt is under way: a stopping worker lets it finish.
        self._unsent.pop(event.id, None)
        outcome = await delivery.deliver(self.database, self.client, event, target)
        if self.observe_attempt is not None:
            if outcome is None:
                self.observe_attempt("skipped", None)
            else:
                self.observe_attempt(outcome.status, outcome.duration_ms / 1000)


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


@asynccontextmanager
async def in_process_worker(
    runtime: Runtime, *, observe_attempt: Callable[[str, float | None], None] | None = None
) -> AsyncIterator[DeliveryWorker | None]:
    """The web process's own worker while the app runs, when STREAMWARD_RUN_WORKER says so (else
    None): started on entry; on exit it stops, finishing the sends under way."""
    if not runtime.settings.run_worker:
        yield None
        return
    stop = asyncio.Event()
    worker = worker_for(runtime, observe_attempt=observe_attempt)
    running = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await running
