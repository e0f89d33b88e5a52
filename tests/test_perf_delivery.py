"""Delivery by the batch: what the worker's batching must do (database work per batch, not per event)
and must keep (per-organisation limits, 410 Gone, hand-back on stop, one organisation's backlog not
delaying another's first attempt). Counts of statements, never timings: bench/delivery.py and
bench/delivery_latency.py measure speed."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select

from streamward.audit.models import AuditEntry
from streamward.db import utcnow
from streamward.egress.client import SendResult
from streamward.events.models import OutboxEvent, WebhookDelivery
from streamward.events.outbox import emit
from streamward.orgs.models import Organisation
from streamward.webhooks import delivery
from streamward.webhooks.delivery import BACKOFF_SECONDS, Attempt, ClaimedEvent
from streamward.webhooks.outcome import outcome_of
from streamward.worker import DeliveryWorker, WorkerOptions
from tests.conftest import CreatedOrg, Env
from tests.support.data import configure_webhook, emit_event, event_row
from tests.support.receiver import Received, Receiver, Reply


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhook_targets": True, "webhook_timeout_seconds": 5.0}


@contextmanager
def statements(env: Env) -> Iterator[Counter[str]]:
    """Counts the statements sent to the database meanwhile, by what they do (an executemany is one)."""
    seen: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        text = " ".join(statement.split())
        if text.startswith("WITH picked AS MATERIALIZED"):
            seen["claim"] += 1
        elif text.startswith("SELECT organisation.id, organisation.webhook_url"):
            seen["webhooks read"] += 1
        elif text.startswith("INSERT INTO webhook_delivery"):
            seen["attempts logged"] += 1
        elif text.startswith("UPDATE outbox_event"):
            seen["events moved"] += 1

    engine = env.runtime.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def emit_many(env: Env, org: CreatedOrg, count: int) -> list[uuid.UUID]:
    async with env.runtime.database.session() as session:
        events = [emit(session, "user.invited", {"n": n}, organisation_id=org.id) for n in range(count)]
        await session.commit()
    return [e.id for e in events]


def worker(env: Env, **options: Any) -> DeliveryWorker:
    return DeliveryWorker(
        env.runtime.database,
        env.runtime.secret_box,
        env.runtime.egress,
        WorkerOptions(poll_interval_seconds=0.05, **options),
    )


async def statuses(env: Env, ids: list[uuid.UUID]) -> Counter[str]:
    async with env.runtime.database.session(write=False) as session:
        rows = await session.execute(select(OutboxEvent.status).where(OutboxEvent.id.in_(ids)))
        return Counter(rows.scalars())


async def test_claim_leases_a_batch_in_one_statement(env: Env) -> None:
    org, other = await env.org(), await env.org()
    ids = await emit_many(env, org, 25)
    theirs = await emit_many(env, other, 5)
    # Every organisation with due events left out: nothing is leased.
    both = [org.id, other.id]
    assert await delivery.claim(env.runtime.database, 10, lease_seconds=60, exclude=both) == []
    with statements(env) as seen:
        claimed = await delivery.claim(env.runtime.database, 10, lease_seconds=60, exclude=[other.id])
    assert seen["claim"] == 1 and seen["events moved"] == 0
    assert len(claimed) == 10 and {e.organisation_id for e in claimed} == {org.id}
    assert [e.id for e in claimed] == ids[:10]  # the longest due first, in the order they were made
    assert {e.attempt for e in claimed} == {1}
    again = await delivery.claim(env.runtime.database, 100, lease_seconds=60)
    assert {e.id for e in again} == set(ids[10:]) | set(theirs)  # the leased ones are not due
    row = await event_row(env, ids[0])
    assert row.attempts == 1 and row.locked_until is not None and row.locked_until > utcnow()


async def test_a_batch_of_attempts_is_recorded_in_one_transaction_of_a_few_statements(env: Env) -> None:
    org = await env.org()
    await configure_webhook(env, org, "http://127.0.0.1:9/hook", events=["user.invited"])
    await emit_many(env, org, 6)
    claimed = await delivery.claim(env.runtime.database, 6, lease_seconds=60)
    url = "http://127.0.0.1:9/hook"
    results = [
        SendResult(200, 3),
        SendResult(503, 3),
        SendResult(429, 3, retry_after_seconds=120),
        SendResult(400, 3),
        SendResult(410, 3),
    ]
    attempts = [Attempt(e, url, outcome_of(r)) for e, r in zip(claimed, results, strict=False)]
    attempts.append(Attempt(claimed[5]))  # nothing was sent: skipped
    with statements(env) as seen:
        await delivery.record(env.runtime.database, attempts)
    # One INSERT for the whole log; one UPDATE for the finished events, one for those tried again.
    assert seen["attempts logged"] == 1
    assert seen["events moved"] == 2
    rows = {e.id: await event_row(env, e.id) for e in claimed}
    got = [(rows[e.id].status, rows[e.id].locked_until) for e in claimed]
    assert got == [
        ("delivered", None),
        ("pending", None),
        ("pending", None),
        ("failed", None),
        ("failed", None),
        ("skipped", None),
    ]
    retry = (rows[claimed[1].id].next_attempt_at - utcnow()).total_seconds()
    assert BACKOFF_SECONDS[1] - 2 < retry <= BACKOFF_SECONDS[1]
    retry_after = (rows[claimed[2].id].next_attempt_at - utcnow()).total_seconds()
    assert 100 < retry_after <= 120
    async with env.runtime.database.session(write=False) as session:
        logged = (await session.execute(select(WebhookDelivery))).scalars().all()
        audited = Counter((await session.execute(select(AuditEntry.action))).scalars())
        organisation = await session.get(Organisation, org.id)
    assert sorted((d.event_id, d.attempt, d.response_code) for d in logged) == sorted(
        (e.id, 1, r.status_code) for e, r in zip(claimed, results, strict=False)
    )
    assert audited["webhook.delivery_failed"] == 2 and audited["webhook.disabled"] == 1
    assert organisation is not None and organisation.webhook_disabled_at is not None


async def test_an_attempt_recorded_after_the_lease_moved_on_does_not_move_the_event(env: Env) -> None:
    org = await env.org()
    await emit_many(env, org, 1)
    [first] = await delivery.claim(env.runtime.database, 1, lease_seconds=0)
    [second] = await delivery.claim(env.runtime.database, 1, lease_seconds=60)  # the lease ran out
    assert (second.id, second.attempt) == (first.id, 2)
    await delivery.record(
        env.runtime.database, [Attempt(first, "http://x/hook", outcome_of(SendResult(200, 1)))]
    )
    row = await event_row(env, first.id)
    assert (row.status, row.attempts) == ("pending", 2)  # still the second claim's
    assert row.locked_until is not None


async def test_the_worker_reads_a_backlog_a_batch_at_a_time(env: Env) -> None:
    org = await env.org()
    async with Receiver() as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        ids = await emit_many(env, org, 100)
        with statements(env) as seen:
            assert await worker(env, batch_size=20).drain() == 100
        assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(map(str, ids))
    assert await statuses(env, ids) == {"delivered": 100}
    # Five batches, each reading the organisation's webhook once; around each, the claims that look
    # for other organisations' events come back empty.
    assert seen["webhooks read"] == 5
    assert seen["claim"] <= 4 * 5
    assert seen["attempts logged"] < 100  # recorded many at a time, not one transaction per event


async def test_batches_keep_each_organisations_limit_of_sends_in_flight(env: Env) -> None:
    first, second = await env.org("First"), await env.org("Second")
    in_flight: Counter[str] = Counter()
    most: Counter[str] = Counter()

    async def answer(request: Received, _n: int) -> Reply:
        in_flight[request.path] += 1
        most[request.path] = max(most[request.path], in_flight[request.path])
        await asyncio.sleep(0.02)
        in_flight[request.path] -= 1
        return Reply(200)

    async with Receiver(answer) as receiver:
        await configure_webhook(env, first, receiver.url("/first"), events=["user.invited"])
        await configure_webhook(env, second, receiver.url("/second"), events=["user.invited"])
        ids = await emit_many(env, first, 30) + await emit_many(env, second, 30)
        await worker(env, concurrency=8, per_organisation_concurrency=3, batch_size=16).drain()
    assert await statuses(env, ids) == {"delivered": 60}
    assert most == {"/first": 3, "/second": 3}


async def test_after_a_410_the_rest_of_the_batch_is_not_sent(env: Env) -> None:
    org = await env.org()
    async with Receiver(lambda _r, _n: Reply(410)) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        ids = await emit_many(env, org, 6)
        await worker(env, per_organisation_concurrency=1).drain()
        assert len(receiver.requests) == 1
    assert await statuses(env, ids) == {"failed": 1, "skipped": 5}
    async with env.runtime.database.session(write=False) as session:
        disabled = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "webhook.disabled")
        )
    assert disabled == 1


async def test_a_webhook_saved_again_after_a_410_is_sent_to(env: Env) -> None:
    org = await env.org()
    async with Receiver(lambda _r, n: Reply(410 if n == 1 else 200)) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        first = await emit_event(env, org)
        sender = worker(env)
        await sender.drain()
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])  # same URL, enabled
        second = await emit_event(env, org)
        await sender.drain()  # the same worker: what it learnt of the 410 does not outlive the save
        assert len(receiver.requests) == 2
    assert (await event_row(env, first)).status == "failed"
    assert (await event_row(env, second)).status == "delivered"


async def test_a_stopped_worker_hands_back_the_events_waiting_for_a_slot(env: Env) -> None:
    org = await env.org()
    release = asyncio.Event()
    async with Receiver(lambda _r, _n: Reply(200, hold=release)) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        ids = await emit_many(env, org, 5)
        stop = asyncio.Event()
        running = worker(env, per_organisation_concurrency=1)
        task = asyncio.create_task(running.run(stop))
        await receiver.wait_for(1)  # one under way, four claimed and waiting for the slot
        stop.set()
        await asyncio.sleep(0.1)
        release.set()
        await task
        assert len(receiver.requests) == 1
    sent = receiver.requests[0].headers["webhook-id"]
    for event_id in ids:
        row = await event_row(env, event_id)
        if str(event_id) == sent:
            assert (row.status, row.attempts, row.locked_until) == ("delivered", 1, None)
        else:
            assert (row.status, row.attempts, row.locked_until) == ("pending", 0, None)


async def test_a_backlog_does_not_hold_up_another_organisations_first_attempt(env: Env) -> None:
    busy, quiet = await env.org("Busy"), await env.org("Quiet")
    async with Receiver(lambda r, _n: Reply(200, delay=0.01 if r.path == "/busy" else 0)) as receiver:
        await configure_webhook(env, busy, receiver.url("/busy"), events=["user.invited"])
        await configure_webhook(env, quiet, receiver.url("/quiet"), events=["user.invited"])
        backlog = await emit_many(env, busy, 400)  # at least a second's worth at 4 in flight
        stop = asyncio.Event()
        running = worker(env, batch_size=32)
        task = asyncio.create_task(running.run(stop))
        try:
            await receiver.wait_for(10)
            [waiting] = await emit_many(env, quiet, 1)
            running.wakeup.set()  # as the post-commit hook does in the web process
            async with asyncio.timeout(10):
                while (await event_row(env, waiting)).status != "delivered":  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            left = (await statuses(env, backlog))["pending"]
        finally:
            stop.set()
            await task
    assert left > 100  # the quiet organisation's event went out while the backlog was far from done


async def test_hand_back_gives_back_the_attempt_of_each_event(env: Env) -> None:
    org = await env.org()
    await emit_many(env, org, 3)
    claimed: list[ClaimedEvent] = await delivery.claim(env.runtime.database, 3, lease_seconds=60)
    with statements(env) as seen:
        await delivery.hand_back(env.runtime.database, claimed)
    assert seen["events moved"] == 1  # one statement for them all
    for claimed_event in claimed:
        row = await event_row(env, claimed_event.id)
        assert (row.attempts, row.locked_until) == (0, None)
    assert len(await delivery.claim(env.runtime.database, 10, lease_seconds=60)) == 3
