"""Stream events from media servers: publish authorisation through the organisation's webhook."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from streamward.audit.models import AuditEntry
from streamward.events.models import OutboxEvent
from streamward.vod.models import VodAsset
from streamward.worker import worker_for
from tests.conftest import CreatedOrg, Env, Member
from tests.support.data import INGEST_SECRET, configure_webhook, publish_form
from tests.support.receiver import Receiver, Reply

HEADERS = {"X-Ingest-Secret": INGEST_SECRET}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "ingest_secret": INGEST_SECRET,
        "allow_private_webhook_targets": True,
        "publish_webhook_timeout_seconds": 0.5,
    }


async def new_stream(env: Env, member: Member, **body: Any) -> dict[str, Any]:
    response = await env.client.post("/api/stream", json=body, headers=member.headers)
    assert response.status_code in (200, 201), response.text
    stream: dict[str, Any] = response.json()
    return stream


async def stream_state(env: Env, member: Member, stream_id: str) -> str:
    response = await env.client.get(f"/api/stream/{stream_id}", headers=member.headers)
    state: str = response.json()["state"]
    return state


async def audit_actions(env: Env) -> list[str]:
    async with env.runtime.database.session() as session:
        return list((await session.execute(select(AuditEntry.action))).scalars())


async def setup(env: Env, packages: list[str] | None = None) -> tuple[CreatedOrg, Member, dict[str, Any]]:
    org = await env.org(packages=packages)
    admin = await env.member(org, "nanoAdmin")
    return org, admin, await new_stream(env, admin)


async def test_publish_without_webhook_is_allowed_and_goes_live(env: Env) -> None:
    _, admin, stream = await setup(env)
    response = await env.client.post(
        "/api/ingest/publish", data=publish_form(stream["name"]), headers=HEADERS
    )
    assert response.status_code == 200, response.text
    assert await stream_state(env, admin, stream["id"]) == "live"
    assert "stream.published" in await audit_actions(env)


async def test_publish_asks_the_webhook_with_the_documented_signed_form(env: Env) -> None:
    org, admin, stream = await setup(env)
    async with Receiver(lambda _r, _n: Reply(200)) as receiver:
        secret = await configure_webhook(env, org, receiver.url())
        response = await env.client.post(
            "/api/ingest/publish", data=publish_form(stream["name"], extra_field="dropped"), headers=HEADERS
        )
        assert response.status_code == 200, response.text
    [request] = receiver.requests
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert (
        request.body.decode() == f"call=publish&name={stream['name']}&app=live&addr=198.51.100.20&clientid=42"
    )
    Webhook(secret).verify(request.body, request.headers, json_parse=False)  # raises if unsigned
    assert await stream_state(env, admin, stream["id"]) == "live"


@pytest.mark.parametrize(
    "reply", [Reply(403), Reply(500), Reply(302, {"location": "/x"}), Reply(200, delay=2.0)]
)
async def test_publish_rejected_by_webhook_answer_or_timeout(env: Env, reply: Reply) -> None:
    org, admin, stream = await setup(env)
    async with Receiver(lambda _r, _n: reply) as receiver:
        await configure_webhook(env, org, receiver.url())
        response = await env.client.post(
            "/api/ingest/publish", data=publish_form(stream["name"]), headers=HEADERS
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "publish_rejected"
    assert await stream_state(env, admin, stream["id"]) == "created"
    assert "stream.publish_rejected" in await audit_actions(env)  # kept although the request failed


async def test_unknown_locked_and_deleted_streams_are_rejected(env: Env) -> None:
    _, admin, _ = await setup(env)
    unknown = await env.client.post(
        "/api/ingest/publish", data=publish_form("no-such-stream"), headers=HEADERS
    )
    assert unknown.status_code == 403
    locked = await new_stream(env, admin)
    assert (
        await env.client.post(f"/api/stream/{locked['id']}/lock", headers=admin.headers)
    ).status_code == 200
    response = await env.client.post(
        "/api/ingest/publish", data=publish_form(locked["name"]), headers=HEADERS
    )
    assert response.status_code == 403
    deleted = await new_stream(env, admin)
    assert (await env.client.delete(f"/api/stream/{deleted['id']}", headers=admin.headers)).status_code in (
        200,
        204,
    )
    response = await env.client.post(
        "/api/ingest/publish", data=publish_form(deleted["name"]), headers=HEADERS
    )
    assert response.status_code == 403


async def test_ingest_needs_the_secret(env: Env) -> None:
    _, _, stream = await setup(env)
    missing = await env.client.post("/api/ingest/publish", data=publish_form(stream["name"]))
    assert missing.status_code == 401
    wrong = await env.client.post(
        "/api/ingest/publish", data=publish_form(stream["name"]), headers={"X-Ingest-Secret": "nope"}
    )
    assert wrong.status_code == 401


class TestIngestDisabled:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {}

    async def test_without_a_secret_ingest_is_off(self, env: Env) -> None:
        response = await env.client.post("/api/ingest/publish", data=publish_form("x"), headers=HEADERS)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "ingest_disabled"


async def test_update_publish_and_publish_done_go_through_the_outbox(env: Env) -> None:
    org, admin, stream = await setup(env)
    async with Receiver() as receiver:
        await configure_webhook(env, org, receiver.url())
        name = stream["name"]
        assert (
            await env.client.post("/api/ingest/publish", json=publish_form(name), headers=HEADERS)
        ).status_code == 200
        update = publish_form(name, "update_publish", time="30", timestamp="1700000000")
        assert (
            await env.client.post("/api/ingest/update_publish", data=update, headers=HEADERS)
        ).status_code == 200
        done = publish_form(name, "publish_done", bytes_in="1000", bytes_out="2000")
        assert (
            await env.client.post("/api/ingest/publish_done", data=done, headers=HEADERS)
        ).status_code == 200
        assert await stream_state(env, admin, stream["id"]) == "ended"
        async with env.runtime.database.session() as session:
            types = set((await session.execute(select(OutboxEvent.type))).scalars())
        assert {"media.update_publish", "media.publish_done"} <= types
        await worker_for(env.runtime).drain()
    bodies = [r.body.decode() for r in receiver.requests]
    assert bodies[0].startswith("call=publish&")  # the synchronous publish question
    assert (
        f"call=update_publish&name={name}&app=live&addr=198.51.100.20&clientid=42&time=30&timestamp=1700000000"
        in bodies
    )
    assert (
        f"call=publish_done&name={name}&app=live&addr=198.51.100.20&clientid=42&bytes_in=1000&bytes_out=2000"
        in bodies
    )


async def test_wrong_call_and_missing_name_are_400(env: Env) -> None:
    response = await env.client.post(
        "/api/ingest/publish", data={"call": "publish_done", "name": "x"}, headers=HEADERS
    )
    assert response.status_code == 400
    response = await env.client.post("/api/ingest/publish", data={"call": "publish"}, headers=HEADERS)
    assert response.status_code == 400
    response = await env.client.post(
        "/api/ingest/publish", content=b"{nope", headers=HEADERS | {"content-type": "application/json"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(("packages", "recorded"), [(["live_processing.recording"], 1), ([], 0)])
async def test_publish_done_records_a_vod_asset_only_with_recording(
    env: Env, packages: list[str], recorded: int
) -> None:
    _, _, stream = await setup(env, packages=packages)
    name = stream["name"]
    await env.client.post("/api/ingest/publish", data=publish_form(name), headers=HEADERS)
    response = await env.client.post(
        "/api/ingest/publish_done", data=publish_form(name, "publish_done"), headers=HEADERS
    )
    assert response.status_code == 200
    async with env.runtime.database.session() as session:
        assets = list((await session.execute(select(VodAsset))).scalars())
    assert len(assets) == recorded
    if assets:
        assert str(assets[0].stream_id) == stream["id"]
        assert assets[0].url.endswith(".mp4")
