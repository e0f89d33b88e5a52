"""No network call inside a write transaction: a slow webhook receiver or a slow DNS server must
not hold SQLite's one write lock (every other organisation's writes would queue behind it) nor, on
PostgreSQL, an open transaction.

Each test holds the remote side (receiver or resolver) until the test lets it go, checks while it
is held that no transaction is open, and has another organisation write meanwhile: that write must
finish while the remote side is still held. A fallback timer lets the remote side go if the write
cannot finish (the bug), so a failure shows as an ordering, not as a hang.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from streamward.audit.models import AuditEntry
from streamward.events.models import OutboxEvent, WebhookDelivery
from tests.conftest import CreatedOrg, Env, Member
from tests.support.data import INGEST_SECRET, configure_webhook, publish_form
from tests.support.pages import flash_of, followed, submit
from tests.support.receiver import Receiver, Reply

# How long the remote side waits at most before answering on its own: only reached when the write
# under test cannot finish (the failure case), so it is generous for a loaded machine.
FALLBACK_SECONDS = 10.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "allow_private_webhook_targets": True,
        "ingest_secret": INGEST_SECRET,
        "publish_webhook_timeout_seconds": 10.0,
    }


async def open_write_transactions(env: Env) -> int:
    """How many write transactions are open right now (other than this check's own)."""
    if env.engine_name == "sqlite":
        path = make_url(env.runtime.database.url).database
        assert path
        connection = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")  # fails at once while another writer holds the lock
        except sqlite3.OperationalError as refused:
            if "locked" not in str(refused):
                raise
            return 1
        else:
            connection.execute("ROLLBACK")
            return 0
        finally:
            connection.close()
    async with env.runtime.database.session(write=False) as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        )
        return int(count or 0)


class Held:
    """The remote side's hold: let go by the test, or by the fallback timer."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.by_timer = False
        self._timer: asyncio.TimerHandle | None = None

    def start_fallback(self) -> None:
        def expire() -> None:
            self.by_timer = True
            self.released.set()

        self._timer = asyncio.get_running_loop().call_later(FALLBACK_SECONDS, expire)

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.released.set()


@pytest.fixture
async def held() -> AsyncIterator[Held]:
    hold = Held()
    yield hold
    hold.release()


async def another_organisations_write(env: Env, other: CreatedOrg) -> None:
    """A write of an unrelated organisation (a player-key rotation): it needs the write lock."""
    response = await env.client.post(
        "/api/organisation/playerkey/rotate", json={"confirm": True}, headers=other.api_headers
    )
    assert response.status_code == 200, response.text


@pytest.fixture
async def unrelated(env: Env) -> CreatedOrg:
    return await env.org("Unrelated")


async def while_held(env: Env, held: Held, other: CreatedOrg) -> None:
    """What must hold while the remote side is still answering."""
    held.start_fallback()
    assert await open_write_transactions(env) == 0
    await another_organisations_write(env, other)
    assert not held.by_timer, "the unrelated write had to wait for the remote side to answer"
    held.release()


async def setup_org(env: Env) -> tuple[CreatedOrg, Member]:
    org = await env.org()
    return org, await env.member(org, "nanoAdmin")


async def test_api_test_event_to_a_slow_receiver_holds_no_transaction(
    env: Env, held: Held, unrelated: CreatedOrg
) -> None:
    org, admin = await setup_org(env)
    async with Receiver(lambda _r, _n: Reply(200, hold=held.released)) as receiver:
        await configure_webhook(env, org, receiver.url())
        sending = asyncio.create_task(
            env.client.post("/api/organisation/webhook/test", headers=admin.headers)
        )
        await receiver.wait_for(1)  # on the wire, unanswered
        await while_held(env, held, unrelated)
        tested = await sending
    assert tested.status_code == 200, tested.text
    assert tested.json()["delivered"] is True
    event_id = tested.json()["eventId"]
    # Recorded after the send, under the id the receiver saw.
    assert receiver.requests[0].headers["webhook-id"] == event_id
    async with env.runtime.database.session(write=False) as session:
        event = await session.get(OutboxEvent, uuid.UUID(event_id))
        assert event is not None and (event.status, event.attempts) == ("delivered", 1)
        [delivery] = (
            await session.execute(select(WebhookDelivery).where(WebhookDelivery.event_id == event.id))
        ).scalars()
        assert (delivery.status, delivery.response_code) == ("succeeded", 200)


async def test_dashboard_test_event_to_a_slow_receiver_holds_no_transaction(
    env: Env, held: Held, unrelated: CreatedOrg, sign_in: Any
) -> None:
    org, admin = await setup_org(env)
    browser: httpx.AsyncClient = await sign_in(admin)
    async with Receiver(lambda _r, _n: Reply(200, hold=held.released)) as receiver:
        await configure_webhook(env, org, receiver.url())
        sending = asyncio.create_task(submit(browser, "/organisation/overview", "/organisation/webhook/test"))
        await receiver.wait_for(1)
        await while_held(env, held, unrelated)
        sent = await sending
    overview = await followed(browser, sent, "/organisation/overview")
    assert flash_of(overview) == ("success", "The test event was delivered: the receiver answered HTTP 200.")


def holding_resolver(held: Held, asked: list[str]) -> Any:
    async def resolve(host: str, _port: int) -> list[str]:
        asked.append(host)
        if host == "slow-dns.example.com":
            await held.released.wait()
        return ["93.184.216.34"]

    return resolve


async def until(condition: Any) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - the condition is another task's progress
            await asyncio.sleep(0.01)


async def test_api_webhook_save_resolves_outside_the_transaction(
    env: Env, held: Held, unrelated: CreatedOrg
) -> None:
    _, admin = await setup_org(env)
    asked: list[str] = []
    env.runtime.webhook_resolver = holding_resolver(held, asked)
    saving = asyncio.create_task(
        env.client.put(
            "/api/organisation/webhook",
            json={"webhook": "https://slow-dns.example.com/hook"},
            headers=admin.headers,
        )
    )
    await until(lambda: "slow-dns.example.com" in asked)  # the lookup is under way
    await while_held(env, held, unrelated)
    saved = await saving
    assert saved.status_code == 200, saved.text
    assert saved.json()["webhook"] == "https://slow-dns.example.com/hook"
    assert saved.json()["secret"].startswith("whsec_")


async def test_dashboard_webhook_save_resolves_outside_the_transaction(
    env: Env, held: Held, unrelated: CreatedOrg, sign_in: Any
) -> None:
    _, admin = await setup_org(env)
    browser: httpx.AsyncClient = await sign_in(admin)
    asked: list[str] = []
    env.runtime.webhook_resolver = holding_resolver(held, asked)
    saving = asyncio.create_task(
        submit(
            browser,
            "/organisation/overview",
            "/organisation/webhook",
            {"url": "https://slow-dns.example.com/hook"},
        )
    )
    await until(lambda: "slow-dns.example.com" in asked)
    await while_held(env, held, unrelated)
    saved = await saving
    # The first save makes a signing secret: never in the redirect's URL, shown once on the overview.
    assert "whsec_" not in saved.headers.get("location", "")
    overview = await followed(browser, saved, "/organisation/overview")
    kind, said = flash_of(overview)
    assert kind == "success" and "The webhook was saved with a new signing secret" in said
    assert 'id="webhook-secret" type="text" readonly value="whsec_' in overview
    assert "whsec_" not in (await browser.get("/organisation/overview")).text  # only once


async def test_a_save_landing_during_the_lookup_is_not_overwritten_blindly(env: Env, held: Held) -> None:
    """The organisation is read again after the lookup: a save that landed meanwhile created the
    secret, so the slow save keeps it (and reports none as new), and its audit entry's "before" is
    what was really there."""
    _, admin = await setup_org(env)
    asked: list[str] = []
    env.runtime.webhook_resolver = holding_resolver(held, asked)
    slow = asyncio.create_task(
        env.client.put(
            "/api/organisation/webhook",
            json={"webhook": "https://slow-dns.example.com/hook"},
            headers=admin.headers,
        )
    )
    await until(lambda: "slow-dns.example.com" in asked)
    fast = await env.client.put(
        "/api/organisation/webhook", json={"webhook": "https://fast.example.com/hook"}, headers=admin.headers
    )
    assert fast.status_code == 200, fast.text
    assert fast.json()["secret"].startswith("whsec_")
    held.release()
    late = await slow
    assert late.status_code == 200, late.text
    assert late.json()["webhook"] == "https://slow-dns.example.com/hook"
    assert late.json().get("secret") is None  # the secret the fast save handed out stays valid
    async with env.runtime.database.session(write=False) as session:
        entries = (
            await session.execute(
                select(AuditEntry).where(AuditEntry.action == "webhook.updated").order_by(AuditEntry.id)
            )
        ).scalars()
        befores = [entry.before["url"] for entry in entries]
    assert befores == [None, "https://fast.example.com/hook"]


async def test_publish_authorisation_holds_no_transaction(
    env: Env, held: Held, unrelated: CreatedOrg
) -> None:
    org, admin = await setup_org(env)
    created = await env.client.post("/api/stream", json={}, headers=admin.headers)
    assert created.status_code == 200, created.text
    async with Receiver(lambda _r, _n: Reply(200, hold=held.released)) as receiver:
        await configure_webhook(env, org, receiver.url())
        publishing = asyncio.create_task(
            env.client.post(
                "/api/ingest/publish",
                data=publish_form(created.json()["name"]),
                headers={"X-Ingest-Secret": INGEST_SECRET},
            )
        )
        await receiver.wait_for(1)
        await while_held(env, held, unrelated)
        published = await publishing
    assert published.status_code == 200, published.text
    assert published.json()["allowed"] is True
