"""VOD: public vs private organisations as strangers see them, the VOD package gate, imports,
deletion, and recordings (Live Processing > Recording)."""

from __future__ import annotations

import uuid

import pytest

from streamward.audit.service import SYSTEM
from streamward.orgs.models import Organisation
from streamward.orgs.packages import UpgradeNeeded
from streamward.streams.models import Stream
from streamward.vod.service import create_recording
from tests.conftest import Env
from tests.support.data import audit_entries, create_stream, import_vod


async def _make_public(env: Env, org_headers: dict[str, str], public: bool) -> None:
    response = await env.client.put("/api/organisation/vod", json={"public": public}, headers=org_headers)
    assert response.status_code == 200 and response.json() == {"public": public}


async def test_public_vod_is_readable_by_anyone_private_vod_is_not_found(env: Env) -> None:
    org = await env.org(packages=["vod"])
    stream = await create_stream(env, org)
    asset = await import_vod(env, org, streamId=stream["id"])
    assert set(asset) == {"id", "streamId", "title", "durationSeconds", "url", "source", "createdAt"}
    assert (asset["streamId"], asset["durationSeconds"], asset["source"]) == (stream["id"], 61.5, "import")
    stranger_org = await env.org(packages=["vod"])
    stranger = await env.member(stranger_org)
    listing = {"organisation": str(org.id)}

    # Private (the default): strangers, with or without credentials, find nothing.
    for headers in ({}, stranger.headers, stranger_org.api_headers):
        assert (await env.client.get(f"/api/vod/{asset['id']}", headers=headers)).status_code == 404
        response = await env.client.get("/api/vod", params=listing, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    observer = await env.member(org, "nanoReadOnly")  # holds vod:read
    assert (await env.client.get(f"/api/vod/{asset['id']}", headers=observer.headers)).json() == asset
    assert (await env.client.get("/api/vod", headers=observer.headers)).json()["items"] == [asset]

    await _make_public(env, org.api_headers, True)
    for headers in ({}, stranger.headers):
        assert (await env.client.get(f"/api/vod/{asset['id']}", headers=headers)).json() == asset
        page = (await env.client.get("/api/vod", params=listing, headers=headers)).json()
        assert page == {"items": [asset], "nextCursor": None}
    # A stranger's own list stays their own: naming no organisation means the caller's.
    assert (await env.client.get("/api/vod", headers=stranger.headers)).json()["items"] == []

    await _make_public(env, org.api_headers, False)
    assert (await env.client.get(f"/api/vod/{asset['id']}")).status_code == 404
    entries = await audit_entries(env, org=org, action="organisation.vod_visibility_changed")
    assert [(e.before, e.after) for e in entries] == [
        ({"vodPublic": False}, {"vodPublic": True}),
        ({"vodPublic": True}, {"vodPublic": False}),
    ]


async def test_vod_reads_without_credentials_or_with_bad_ones(env: Env) -> None:
    missing = await env.client.get("/api/vod")
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "unauthenticated")
    bad = await env.client.get("/api/vod", headers={"X-BINTU-TOKEN": "swt_wrong"})
    assert bad.status_code == 401
    for organisation in ("not-a-uuid", "00000000-0000-7000-8000-000000000000"):
        response = await env.client.get("/api/vod", params={"organisation": organisation})
        assert response.status_code in (404, 422), response.text
    assert (await env.client.get("/api/vod/not-a-uuid")).status_code == 404


async def test_a_member_without_vod_read_is_forbidden_on_private_vod(env: Env) -> None:
    org = await env.org(packages=["vod"])
    asset = await import_vod(env, org)
    nobody = await env.member(org, "someUnknownRole")  # resolves to no permissions
    response = await env.client.get(f"/api/vod/{asset['id']}", headers=nobody.headers)
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    await _make_public(env, org.api_headers, True)
    assert (await env.client.get(f"/api/vod/{asset['id']}", headers=nobody.headers)).status_code == 200


async def test_the_vod_api_needs_the_vod_package(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    body = {"title": "t", "durationSeconds": 1, "url": "https://cdn.example.com/t.mp4"}
    responses = [
        await env.client.post("/api/vod", json=body, headers=org.api_headers),
        await env.client.get("/api/vod", headers=org.api_headers),
    ]
    await _make_public(env, org.api_headers, True)  # the flag itself is a setting, not the VOD API
    responses.append(await env.client.get("/api/vod", params={"organisation": str(org.id)}))
    for response in responses:
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert (error["code"], error["details"]["package"]) == ("upgrade_needed", "vod")


async def test_import_validation_and_delete(env: Env) -> None:
    org = await env.org(packages=["vod"])
    other = await env.org(packages=["vod"])
    their_stream = await create_stream(env, other)
    for body in (
        {"title": "t", "durationSeconds": 1, "url": "ftp://cdn.example.com/t.mp4"},
        {"title": "", "durationSeconds": 1, "url": "https://cdn.example.com/t.mp4"},
        {"title": "t", "durationSeconds": -1, "url": "https://cdn.example.com/t.mp4"},
    ):
        assert (await env.client.post("/api/vod", json=body, headers=org.api_headers)).status_code == 422
    foreign = await env.client.post(
        "/api/vod",
        json={
            "title": "t",
            "durationSeconds": 1,
            "url": "https://c.example.com/x",
            "streamId": their_stream["id"],
        },
        headers=org.api_headers,
    )
    assert foreign.status_code == 404
    asset = await import_vod(env, org)
    assert (await env.client.delete(f"/api/vod/{asset['id']}", headers=org.api_headers)).status_code == 204
    assert (await env.client.get(f"/api/vod/{asset['id']}", headers=org.api_headers)).status_code == 404
    assert [e.action for e in await audit_entries(env, org=org)] == ["vod.created", "vod.deleted"]


async def test_recordings_need_live_processing_recording(env: Env) -> None:
    without = await env.org(packages=["vod"])
    with_it = await env.org(packages=["vod", "live_processing.recording"])
    for org, allowed in ((without, False), (with_it, True)):
        stream_id = (await create_stream(env, org))["id"]
        async with env.runtime.database.session() as session:
            organisation = await session.get(Organisation, org.id)
            stream = await session.get(Stream, uuid.UUID(stream_id))
            assert organisation is not None and stream is not None
            if not allowed:
                with pytest.raises(UpgradeNeeded) as refused:
                    await create_recording(
                        session,
                        organisation,
                        stream,
                        title="r",
                        duration_seconds=3,
                        url="https://r/x",
                        actor=SYSTEM,
                    )
                assert refused.value.details == {
                    "package": "live_processing.recording",
                    "title": "Recording",
                }
                continue
            await create_recording(
                session,
                organisation,
                stream,
                title="r",
                duration_seconds=3,
                url="https://r/x.mp4",
                actor=SYSTEM,
            )
            await session.commit()
        (asset,) = (await env.client.get("/api/vod", headers=org.api_headers)).json()["items"]
        assert (asset["source"], asset["streamId"]) == ("recording", stream_id)
