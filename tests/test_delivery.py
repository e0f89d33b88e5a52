"""Webhook delivery against real HTTP receivers on loopback (private targets allowed by setting)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook

from streamward.audit.models import AuditEntry
from streamward.db import utcnow
from streamward.events.models import OutboxEvent, WebhookDelivery
from streamward.orgs.models import Organisation
from streamward.webhooks.delivery import BACKOFF_SECONDS, MAX_ATTEMPTS
from streamward.worker import DeliveryWorker, WorkerOptions, worker_for
from tests.conftest import TEST_SECRET, Env
from tests.support.data import configure_webhook, emit_event, event_row
from tests.support.receiver import Receiver, Reply


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhook_targets": True, "webhook_timeout_seconds": 1.0}


async def deliveries(env: Env, event_id: uuid.UUID) -> list[WebhookDelivery]:
    async with env.runtime.database.session() as session:
        rows = await session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.event_id == event_id)
            .order_by(WebhookDelivery.attempt)
        )
        return list(rows.scalars())


async def until_status(env: Env, event_id: uuid.UUID, status: str, within: float = 10.0) -> None:
    """Wait until a worker (another task or process) has moved the event to ``status``."""
    async with asyncio.timeout(within):
        while (await event_row(env, event_id)).status != status:  # noqa: ASYNC110 - state lives in the database
            await asyncio.sleep(0.05)


async def make_due(env: Env) -> None:
    """Let time pass: every scheduled retry and every lease is due now."""
    async with env.runtime.database.session() as session:
        past = utcnow() - timedelta(seconds=1)
        await session.execute(
            update(OutboxEvent).where(OutboxEvent.status == "pending").values(next_attempt_at=past)
        )
        await session.execute(
            update(OutboxEvent).where(OutboxEvent.locked_until.is_not(None)).values(locked_until=past)
        )
        await session.commit()


async def test_500_twice_then_200_delivers_three_times_with_one_id(env: Env) -> None:
    org = await env.org()
    script = {1: 500, 2: 503, 3: 200}
    async with Receiver(lambda _r, n: Reply(script.get(n, 200))) as receiver:
        secret = await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        event_id = await emit_event(env, org, "user.invited", {"email": "x@example.com"})
        worker = worker_for(env.runtime)
        for _ in range(3):
            await worker.drain()
            await make_due(env)
        assert len(receiver.requests) == 3
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {str(event_id)}
    for request in receiver.requests:  # each attempt is signed, and verifies with the reference library
        payload = Webhook(secret).verify(request.body, request.headers)
        assert payload["type"] == "user.invited"
        assert payload["data"] == {"email": "x@example.com"}
    log = await deliveries(env, event_id)
    assert [(d.attempt, d.status, d.response_code) for d in log] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "succeeded", 200),
    ]
    assert (await event_row(env, event_id)).status == "delivered"


async def test_retry_schedule_and_retry_after(env: Env) -> None:
    org = await env.org()
    async with Receiver(lambda _r, _n: Reply(429, {"retry-after": "120"})) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        event_id = await emit_event(env, org)
        await worker_for(env.runtime).drain()
    row = await event_row(env, event_id)
    assert row.status == "pending"
    assert row.locked_until is None
    wait = (row.next_attempt_at - utcnow()).total_seconds()
    assert BACKOFF_SECONDS[1] < wait <= 120  # Retry-After (120 s) beats the schedule's 5 s


async def test_timeout_is_retried_and_client_errors_are_not(env: Env) -> None:
    org = await env.org()
    async with Receiver(lambda r, _n: Reply(200, delay=3.0) if r.path == "/slow" else Reply(400)) as receiver:
        await configure_webhook(env, org, receiver.url("/slow"), events=["user.invited"])
        slow = await emit_event(env, org)
        await worker_for(env.runtime).drain()
        [attempt] = await deliveries(env, slow)
        assert attempt.status == "failed"
        assert attempt.error is not None and "timed out" in attempt.error
        assert (await event_row(env, slow)).status == "pending"

        await configure_webhook(env, org, receiver.url("/bad"), events=["user.invited"])
        bad = await emit_event(env, org)
        await worker_for(env.runtime).drain()
    assert (await event_row(env, bad)).status == "failed"


async def test_exhausted_retries_mark_failed_and_are_audited(env: Env) -> None:
    org = await env.org()
    async with Receiver(lambda _r, _n: Reply(502)) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        event_id = await emit_event(env, org)
        worker = worker_for(env.runtime)
        for _ in range(MAX_ATTEMPTS):
            await worker.drain()
            await make_due(env)
        assert len(receiver.requests) == MAX_ATTEMPTS
        await worker.drain()  # nothing more to send
        assert len(receiver.requests) == MAX_ATTEMPTS
    assert (await event_row(env, event_id)).status == "failed"
    async with env.runtime.database.session() as session:
        entry = (
            await session.execute(select(AuditEntry).where(AuditEntry.action == "webhook.delivery_failed"))
        ).scalar_one()
    assert entry.organisation_id == org.id
    assert entry.target_id == str(event_id)


async def test_410_disables_the_webhook(env: Env) -> None:
    org = await env.org()
    async with Receiver(lambda _r, _n: Reply(410)) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        first = await emit_event(env, org)
        await worker_for(env.runtime).drain()
        second = await emit_event(env, org)
        await worker_for(env.runtime).drain()
        assert len(receiver.requests) == 1
    assert (await event_row(env, first)).status == "failed"
    assert (await event_row(env, second)).status == "skipped"
    async with env.runtime.database.session() as session:
        organisation = await session.get(Organisation, org.id)
        assert organisation is not None and organisation.webhook_disabled_at is not None
        actions = (await session.execute(select(AuditEntry.action))).scalars().all()
    assert "webhook.disabled" in actions


async def test_redirects_are_not_followed(env: Env) -> None:
    org = await env.org()
    async with Receiver(
        lambda r, _n: Reply(307, {"location": "/elsewhere"}) if r.path == "/hook" else Reply(200)
    ) as rx:
        await configure_webhook(env, org, rx.url(), events=["user.invited"])
        event_id = await emit_event(env, org)
        await worker_for(env.runtime).drain()
        assert [r.path for r in rx.requests] == ["/hook"]
    [attempt] = await deliveries(env, event_id)
    assert (attempt.status, attempt.response_code) == ("failed", 307)


async def test_unsubscribed_management_events_are_skipped_but_media_events_always_go(env: Env) -> None:
    org = await env.org()
    async with Receiver() as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.joined"])
        skipped = await emit_event(env, org, "user.invited")
        media = await emit_event(
            env, org, "media.publish_done", {"fields": {"call": "publish_done", "name": "s1", "bytes_in": 10}}
        )
        await worker_for(env.runtime).drain()
        assert len(receiver.requests) == 1
    assert (await event_row(env, skipped)).status == "skipped"
    assert (await event_row(env, media)).status == "delivered"
    request = receiver.requests[0]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.body == b"call=publish_done&name=s1&bytes_in=10"
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(request.headers)


class TestConnectTimeAddressCheck:
    """A name that resolved to a public address when saved and to loopback at delivery is refused."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"allow_private_webhook_targets": False}

    async def test_rebinding_to_loopback_is_refused_at_delivery(self, env: Env) -> None:
        org = await env.org()

        async def resolver(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]  # the name now points at loopback

        env.runtime.webhook_resolver = resolver
        async with Receiver() as receiver:
            await configure_webhook(env, org, receiver.url(host="hooks.example.com"), events=["user.invited"])
            event_id = await emit_event(env, org)
            await worker_for(env.runtime).drain()
            assert receiver.requests == []
        [attempt] = await deliveries(env, event_id)
        assert attempt.status == "refused"
        assert (await event_row(env, event_id)).status == "failed"


async def test_connects_to_the_checked_address_and_keeps_the_host_name(env: Env) -> None:
    org = await env.org()
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    env.runtime.webhook_resolver = resolver
    async with Receiver() as receiver:
        await configure_webhook(env, org, receiver.url(host="hooks.example.com"), events=["user.invited"])
        await emit_event(env, org)
        await worker_for(env.runtime).drain()
        assert len(receiver.requests) == 1
    assert asked == ["hooks.example.com"]  # resolved once, by us
    assert receiver.requests[0].headers["host"] == f"hooks.example.com:{receiver.port}"


async def test_slow_receiver_of_one_organisation_does_not_hold_up_another(env: Env) -> None:
    slow_org, fast_org = await env.org("Slow"), await env.org("Fast")
    release = asyncio.Event()
    async with Receiver(
        lambda r, _n: Reply(200, hold=release) if r.path == "/slow" else Reply(200)
    ) as receiver:
        await configure_webhook(env, slow_org, receiver.url("/slow"), events=["user.invited"])
        await configure_webhook(env, fast_org, receiver.url("/fast"), events=["user.invited"])
        for _ in range(10):  # more than the slow organisation's concurrency limit
            await emit_event(env, slow_org)
        fast_event = await emit_event(env, fast_org)
        stop = asyncio.Event()
        worker = DeliveryWorker(
            env.runtime.database,
            env.runtime.secret_box,
            env.runtime.egress,
            WorkerOptions(poll_interval_seconds=0.05, concurrency=8, per_organisation_concurrency=2),
        )
        task = asyncio.create_task(worker.run(stop))
        try:
            await until_status(env, fast_event, "delivered")
            slow_seen = [r for r in receiver.requests if r.path == "/slow"]
            assert len(slow_seen) <= 2  # the slow organisation never had more than its limit in flight
        finally:
            release.set()
            stop.set()
            await task


async def test_delivery_log_redeliver_and_test_event_through_the_api(env: Env) -> None:
    org, other = await env.org(), await env.org()
    admin = await env.member(org, "nanoAdmin")
    observer = await env.member(org, "nanoReadOnly")
    stranger = await env.member(other, "nanoAdmin")
    async with Receiver(lambda _r, n: Reply(500 if n == 1 else 200)) as receiver:
        secret = await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        event_id = await emit_event(env, org)
        await worker_for(env.runtime).drain()

        listed = await env.client.get(
            "/api/organisation/webhook/deliveries?status=failed", headers=observer.headers
        )
        assert listed.status_code == 200, listed.text
        [item] = listed.json()["items"]
        assert (item["eventId"], item["status"], item["responseCode"], item["attempt"]) == (
            str(event_id),
            "failed",
            500,
            1,
        )
        assert item["createdAt"].endswith("Z")

        refused = await env.client.post(
            f"/api/organisation/webhook/deliveries/{item['id']}/redeliver", headers=observer.headers
        )
        assert refused.status_code == 403
        hidden = await env.client.post(
            f"/api/organisation/webhook/deliveries/{item['id']}/redeliver", headers=stranger.headers
        )
        assert hidden.status_code == 404
        redelivered = await env.client.post(
            f"/api/organisation/webhook/deliveries/{item['id']}/redeliver", headers=admin.headers
        )
        assert redelivered.status_code == 202, redelivered.text
        assert env.runtime.outbox_wakeup.is_set()  # the in-process worker is woken, not left to poll
        await worker_for(env.runtime).drain()
        assert [r.headers["webhook-id"] for r in receiver.requests] == [str(event_id)] * 2

        tested = await env.client.post("/api/organisation/webhook/test", headers=admin.headers)
        assert tested.status_code == 200, tested.text
        assert tested.json()["delivered"] is True
        test_request = receiver.requests[-1]
        assert Webhook(secret).verify(test_request.body, test_request.headers)["type"] == "webhook.test"

    page = await env.client.get("/api/organisation/webhook/deliveries?limit=1", headers=admin.headers)
    assert len(page.json()["items"]) == 1 and page.json()["nextCursor"]
    seen = [page.json()["items"][0]["id"]]
    while page.json()["nextCursor"]:
        page = await env.client.get(
            f"/api/organisation/webhook/deliveries?limit=1&cursor={page.json()['nextCursor']}",
            headers=admin.headers,
        )
        seen += [i["id"] for i in page.json()["items"]]
    assert len(seen) == len(set(seen)) == 3
    theirs = await env.client.get("/api/organisation/webhook/deliveries", headers=stranger.headers)
    assert theirs.json()["items"] == []


async def test_test_event_without_webhook_is_409(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    response = await env.client.post("/api/organisation/webhook/test", headers=admin.headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "webhook_not_configured"


@pytest.mark.postgres_only
async def test_two_workers_deliver_each_attempt_once(env: Env) -> None:
    from streamward.db import Database
    from streamward.egress.client import EgressClient

    org = await env.org()
    async with Receiver(lambda _r, _n: Reply(200, delay=0.01)) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        ids = [await emit_event(env, org) for _ in range(60)]
        workers = []
        for _ in range(2):
            database = Database(env.runtime.database.url)
            client = EgressClient(allow_private=True, timeout_seconds=5)
            workers.append(
                (
                    DeliveryWorker(database, env.runtime.secret_box, client, WorkerOptions(batch_size=5)),
                    database,
                    client,
                )
            )
        try:
            claimed = await asyncio.gather(*(worker.drain() for worker, _, _ in workers))
        finally:
            for _, database, client in workers:
                await client.aclose()
                await database.dispose()
        assert sum(claimed) == 60
        assert all(count > 0 for count in claimed)  # both really worked
        assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(str(i) for i in ids)


async def test_worker_killed_mid_delivery_delivers_after_restart(env: Env, tmp_path: Any) -> None:
    org = await env.org()
    hold = asyncio.Event()
    async with Receiver(lambda _r, n: Reply(200, hold=hold) if n == 1 else Reply(200)) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        event_id = await emit_event(env, org)
        child_env = {
            **os.environ,
            "STREAMWARD_DATABASE_URL": env.runtime.database.url,
            "STREAMWARD_SECRET_KEY": TEST_SECRET,
            "STREAMWARD_VAR_DIR": str(tmp_path),
            "STREAMWARD_ALLOW_PRIVATE_WEBHOOK_TARGETS": "true",
            "STREAMWARD_WORKER_POLL_INTERVAL_SECONDS": "0.05",
            "STREAMWARD_LOG_LEVEL": "warning",
        }

        async def start_worker() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streamward",
                "worker",
                env=child_env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )

        first = await start_worker()
        await receiver.wait_for(1, within=30)  # the request is in flight, unanswered
        first.kill()  # SIGKILL: no chance to clean up
        await first.wait()
        hold.set()
        assert (await event_row(env, event_id)).status == "pending"

        await make_due(env)  # the dead worker's lease runs out
        second = await start_worker()
        try:
            await until_status(env, event_id, "delivered", within=30)
        finally:
            second.terminate()
            await second.wait()
    assert [r.headers["webhook-id"] for r in receiver.requests] == [str(event_id)] * 2
    assert [json.loads(r.body)["id"] for r in receiver.requests] == [str(event_id)] * 2


async def test_a_receivers_cookie_is_never_sent_with_a_later_delivery(env: Env) -> None:
    """One receiver's connection pool serves every organisation whose webhook names its host: a
    cookie it set on one organisation's delivery must not ride along on another's (nor on its own)."""
    first, second = await env.org(), await env.org()
    cookie = {"set-cookie": "session=from-the-receiver; Path=/"}
    async with Receiver(lambda _r, n: Reply(200, headers=cookie if n == 1 else {})) as receiver:
        for org in (first, second):
            await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        await emit_event(env, first)
        await worker_for(env.runtime).drain()
        await emit_event(env, second)
        await emit_event(env, first)
        await worker_for(env.runtime).drain()
    assert len(receiver.requests) == 3
    assert all("cookie" not in request.headers for request in receiver.requests)
