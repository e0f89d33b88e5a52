"""The delivery worker: a loop that keeps claiming due outbox events and delivering them, each step
done by the delivery library (``streamward.webhooks.delivery``), with housekeeping beside it.

The database work goes by the batch, the network work by the event: one claim leases up to
``batch_size`` events and one query reads their organisations' webhooks; each event is then sent on
its own, concurrently; and the attempts are recorded by a single writer that takes every attempt
finished since its last transaction into the next one (a group commit: one transaction per event
when they trickle in, few when they pour).

A slow or dead receiver of one organisation does not hold up another's: each organisation has its
own limit of sends in flight, and holds at most two batches of claimed events here (sending, or
waiting for one of its slots); organisations without room for another batch are left out of the
next claim, and organisations with nothing here are claimed for first. A worker that is
stopped (SIGTERM) finishes the sends under way, records them, and hands back, at once, the events it
claimed but has not started sending: another worker takes them without waiting for their lease to
run out.

It runs in the web process (``STREAMWARD_RUN_WORKER``, wired by the app) or alone (``streamward
worker``); both build it with ``worker_for``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from streamward.crypto import SecretBox
from streamward.db import Database
from streamward.egress.client import EgressClient
from streamward.housekeeping import run_periodically
from streamward.webhooks import delivery
from streamward.webhooks.delivery import Attempt, ClaimedEvent, WebhookTarget
from streamward.worker.recording import AttemptLog

log = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    poll_interval_seconds: float = 0.2
    # Sends in flight, in all and per organisation.
    concurrency: int = 32
    per_organisation_concurrency: int = 4
    # Events per claim; an organisation holds at most two batches' worth here (see DeliveryWorker).
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
    # Told of every attempt's outcome and duration in seconds (the web process's metrics).
    observe_attempt: Callable[[str, float | None], None] | None = None
    # time.monotonic() of the loop's last turn while running, else None: /readyz reads it.
    last_heartbeat: float | None = None
    # One task per claimed event being delivered (waiting for a slot, or sending).
    _in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    # Claimed and not finished (waiting for a slot, or sending), per organisation and in all: what
    # the next claim may add is bounded by them.
    _held: Counter[uuid.UUID] = field(default_factory=Counter)
    _held_total: int = 0
    # Claimed (leased, attempt counted) and not yet under way: handed back when the worker stops.
    _unsent: dict[uuid.UUID, ClaimedEvent] = field(default_factory=dict)
    _tasks: dict[uuid.UUID, asyncio.Task[None]] = field(default_factory=dict)
    # Sends in flight: per organisation (created with its first held event, dropped with its last)
    # and in all.
    _organisation_slots: dict[uuid.UUID, asyncio.Semaphore] = field(default_factory=dict)
    _send_slots: asyncio.Semaphore = field(init=False)
    # Set when an event leaving lets the next claim take more (a batch's worth, or an organisation
    # that was left out): an idle worker looks for due events again then, not after every send.
    _room_opened: asyncio.Event = field(default_factory=asyncio.Event)
    # Webhooks that answered 410 Gone: organisation -> (url, when the disabling transaction ended,
    # or None while it has not). Events whose webhook was read before that are not sent there; one
    # entry per organisation at most, kept (it only ever stops sends to a URL read before then).
    _gone: dict[uuid.UUID, tuple[str, float | None]] = field(default_factory=dict)
    _attempt_log: AttemptLog = field(init=False)
    # SQLite has one writer: the worker's own transactions (claims, records, hand-backs) take turns
    # here rather than in SQLite's busy handler, which sleeps up to 100 ms between two tries. On
    # PostgreSQL a claim and a record run side by side.
    _write_turn: AbstractAsyncContextManager[Any] = field(init=False)
    # Whether the last claims could take events of any organisation (if they found none, none are
    # due), and whether one came back full (more may be due).
    _looked_everywhere: bool = False
    _more_due: bool = False

    def __post_init__(self) -> None:
        self._send_slots = asyncio.Semaphore(self.options.concurrency)
        self._write_turn = asyncio.Lock() if self.database.is_sqlite else nullcontext()
        self._attempt_log = AttemptLog(self.database, self._recorded, self._write_turn)

    # --- how much the worker takes on ---------------------------------------------------------------

    # An organisation's events held here: two batches, the one being sent and the next, claimed
    # while the first is still going out (a claim's commit takes milliseconds, sends keep going).
    @property
    def _organisation_capacity(self) -> int:
        return 2 * max(self.options.batch_size, self.options.per_organisation_concurrency)

    @property
    def _capacity(self) -> int:
        return self.options.concurrency + 2 * self.options.batch_size

    @property
    def _refill(self) -> int:
        """Claim only when there is room for a whole batch (in all, and for an organisation whose
        events are held here): a steady stream is claimed a batch at a time, not an event per send."""
        return max(1, self.options.batch_size)

    def _room(self, organisation_id: uuid.UUID) -> int:
        """How many more of the organisation's events this worker may take on now."""
        return self._organisation_capacity - self._held[organisation_id]

    # --- the loop -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivery worker started")
        housekeeping = self._start_housekeeping(stop)
        try:
            while not stop.is_set():
                self.last_heartbeat = time.monotonic()
                await self._claim_and_start()
                if self._more_due:
                    continue
                await self._idle(stop)
        finally:
            self.last_heartbeat = None
            await self._hand_back_unsent()
            if self._in_flight:  # sends under way finish (each within the webhook timeout)
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._attempt_log.flush()
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
            task.cancel()  # it has not sent anything: it is waiting for a slot
        await asyncio.gather(*waiting, return_exceptions=True)
        self._unsent.clear()
        try:
            async with self._write_turn:
                await delivery.hand_back(self.database, unsent)
        except Exception:
            log.exception("could not hand back %d claimed events; their leases will run out", len(unsent))
        else:
            log.info("handed back %d claimed events not yet sent", len(unsent))

    async def drain(self) -> int:
        """Deliver everything due now, the way ``run`` does, and return once nothing is due, in
        flight or unrecorded (tests, benchmarks). Returns the number of events claimed."""
        total = 0
        while True:
            claimed = await self._claim_and_start()
            total += claimed
            if self._more_due:
                continue
            if self._in_flight:
                await self._until_room_or_all_sent()
            elif not claimed and self._looked_everywhere:
                await self._attempt_log.flush()
                return total

    async def _until_room_or_all_sent(self) -> None:
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._room_opened.wait()),
            asyncio.ensure_future(asyncio.wait(list(self._in_flight))),  # cancelling it cancels no send
        ]
        try:
            await asyncio.wait(waiters, return_when="FIRST_COMPLETED")
        finally:
            for waiter in waiters:
                waiter.cancel()
        self._room_opened.clear()

    async def _idle(self, stop: asyncio.Event) -> None:
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self.wakeup.wait()),
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self._room_opened.wait()),
        ]
        try:
            await asyncio.wait(
                waiters, timeout=self.options.poll_interval_seconds, return_when="FIRST_COMPLETED"
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        self.wakeup.clear()
        self._room_opened.clear()

    # --- one batch ----------------------------------------------------------------------------------

    async def _claim_and_start(self) -> int:
        """Claim (when there is room for a batch), read the webhooks, and start sending. Returns the
        number of events claimed; ``_more_due`` says whether a claim came back full.

        First for the organisations with no event here: one with a backlog does not hold up
        another's first attempt (its older events would fill the batch). Then, a batch at a time,
        for those with events here and room for another batch."""
        self._more_due = self._looked_everywhere = False
        limit = min(self.options.batch_size, self._capacity - self._held_total)
        if limit < self._refill:
            return 0
        holding = list(self._held)
        claimed = await self._claim_batch(limit, exclude=holding)
        if not holding or self._more_due:
            return claimed
        limit = min(self.options.batch_size, self._capacity - self._held_total)
        stocked = [org for org in self._held if self._room(org) < self._refill]
        if limit < self._refill or set(holding) <= set(stocked):
            return claimed  # no organisation with events here has room for another batch
        return claimed + await self._claim_batch(limit, exclude=stocked)

    async def _claim_batch(self, limit: int, *, exclude: list[uuid.UUID]) -> int:
        try:
            events = await self.claim(limit, exclude=exclude)
        except Exception:
            log.exception("claiming outbox events failed; retrying")
            return 0
        self._more_due = len(events) == limit
        self._looked_everywhere = self._looked_everywhere or not exclude
        if not events:
            return 0
        # Read no earlier than the claim: an event is sent to the webhook as it was configured then.
        read_at = time.monotonic()
        try:
            async with self.database.session(write=False) as session:
                targets = await delivery.load_targets(
                    session, self.box, {event.organisation_id for event in events}
                )
        except Exception:
            log.exception("reading the webhooks of %d claimed events failed; handing them back", len(events))
            await self._give_back(events)
            return 0
        for event in events:
            target = targets.get(event.organisation_id)
            if target is None or not delivery.wants(target, event.type):
                self._unsent.pop(event.id, None)
                self._finished(Attempt(event))  # nothing to send: recorded as skipped
                continue
            self._hold(event.organisation_id)
            task = asyncio.create_task(self._deliver_and_release(event, target, read_at))
            self._in_flight.add(task)
            self._tasks[event.id] = task
            task.add_done_callback(self._in_flight.discard)
        return len(events)

    async def _give_back(self, events: Sequence[ClaimedEvent]) -> None:
        for event in events:
            self._unsent.pop(event.id, None)
        try:
            async with self._write_turn:
                await delivery.hand_back(self.database, events)
        except Exception:
            log.exception("could not hand back %d claimed events; their leases will run out", len(events))

    def _hold(self, organisation_id: uuid.UUID) -> None:
        if organisation_id not in self._organisation_slots:
            self._organisation_slots[organisation_id] = asyncio.Semaphore(
                self.options.per_organisation_concurrency
            )
        self._held[organisation_id] += 1
        self._held_total += 1

    def _release(self, organisation_id: uuid.UUID) -> None:
        self._held[organisation_id] -= 1
        self._held_total -= 1
        left = self._held[organisation_id]
        if left <= 0:
            del self._held[organisation_id]
            del self._organisation_slots[organisation_id]
        # Held counts fall one at a time, so each threshold is met exactly when it is crossed.
        if self._room(organisation_id) == self._refill or self._capacity - self._held_total == self._refill:
            self._room_opened.set()

    async def _deliver_and_release(self, event: ClaimedEvent, target: WebhookTarget, read_at: float) -> None:
        organisation_id = event.organisation_id
        try:
            async with self._organisation_slots[organisation_id], self._send_slots:
                # From here on the attempt is under way: a stopping worker lets it finish.
                self._unsent.pop(event.id, None)
                if self._known_gone(organisation_id, target, read_at):
                    done = Attempt(event)  # the receiver said 410 meanwhile: the webhook is disabled
                else:
                    done = await delivery.attempt(self.client, event, target)
        except Exception:
            log.exception(
                "delivering event %s failed unexpectedly; it will be retried after its lease", event.id
            )
            return
        finally:
            self._tasks.pop(event.id, None)
            self._release(organisation_id)
        self._finished(done)

    def _finished(self, done: Attempt) -> None:
        outcome = done.outcome
        if outcome is not None and outcome.response_code == 410 and done.url is not None:
            self._gone[done.event.organisation_id] = (done.url, None)
        self._attempt_log.add(done)
        if self.observe_attempt is not None:
            if outcome is None:
                self.observe_attempt("skipped", None)
            else:
                self.observe_attempt(outcome.status, outcome.duration_ms / 1000)

    def _known_gone(self, organisation_id: uuid.UUID, target: WebhookTarget, read_at: float) -> bool:
        """Whether the receiver answered 410 Gone since ``target`` was read: the webhook is disabled
        (or about to be, once the attempt is recorded), so nothing more goes there. A webhook read
        after the disabling transaction is what the database says: None if still disabled."""
        gone = self._gone.get(organisation_id)
        if gone is None:
            return False
        url, settled_at = gone
        return url == target.url and (settled_at is None or read_at < settled_at)

    def _recorded(self, batch: Sequence[Attempt]) -> None:
        """A batch's transaction is over: a webhook that answered 410 in it is disabled now (or, if
        the transaction failed, is not): what is read from now on is what the database says."""
        now = time.monotonic()
        for done in batch:
            if done.outcome is None or done.outcome.response_code != 410:
                continue
            organisation_id = done.event.organisation_id
            gone = self._gone.get(organisation_id)
            if gone is not None and gone[1] is None and gone[0] == done.url:
                self._gone[organisation_id] = (gone[0], now)

    async def claim(self, limit: int, *, exclude: list[uuid.UUID] | None = None) -> list[ClaimedEvent]:
        """Lease up to ``limit`` due events, none of the organisations in ``exclude``."""
        async with self._write_turn:
            claimed = await delivery.claim(
                self.database, limit, lease_seconds=self.options.lease_seconds, exclude=exclude or ()
            )
        self._unsent.update((event.id, event) for event in claimed)
        return claimed
