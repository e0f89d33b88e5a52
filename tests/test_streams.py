"""Streams: creation with generated names, ingest and playout from the settings, listing with
filters and keyset pagination, the lifecycle (refused transitions are 409), events and audit."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from streamward.config import SettingsError, load_settings
from streamward.streams.models import Stream, StreamTag
from tests.conftest import Env
from tests.overview_support import (
    ALL_PACKAGES,
    audit_entries,
    count,
    create_stream,
    events,
    member,
    set_state,
)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "ingest_rtmp_url": "rtmp://ingest.example.com:1935/live/",
        "playout_base_url": "https://play.example.com/hls",
    }


async def test_create_returns_name_state_ingest_playout_tags(env: Env) -> None:
    org = await env.org()
    operator = await member(env, org, "nanoUser")
    response = await env.client.post(
        "/api/stream",
        json={"tags": ["news", " region:eu ", "news"], "groupId": "stage-1"},
        headers=operator.headers,
    )
    assert response.status_code == 201, response.text
    stream = response.json()
    assert re.fullmatch(r"[a-z0-9]{5}-[a-z0-9]{5}", stream["name"])
    assert stream["state"] == "created"
    assert stream["tags"] == ["news", "region:eu"]  # trimmed, de-duplicated, sorted
    assert stream["groupId"] == "stage-1" and stream["transcodes"] == []
    assert stream["ingest"] == {
        "rtmpUrl": "rtmp://ingest.example.com:1935/live",
        "streamName": stream["name"],
    }
    assert stream["playout"] == [
        {
            "rendition": "source",
            "streamName": stream["name"],
            "url": f"https://play.example.com/hls/{stream['name']}/index.m3u8",
        }
    ]
    assert stream["createdAt"].endswith("Z")
    assert (await env.client.get(f"/api/stream/{stream['id']}", headers=operator.headers)).json() == stream

    (event,) = await events(env, org, "stream.created")
    assert event.payload == {
        "id": stream["id"],
        "name": stream["name"],
        "state": "created",
        "tags": stream["tags"],
    }
    (entry,) = await audit_entries(env, org, "stream.created")
    assert entry.actor == f"user:{operator.id}" and entry.target_id == stream["id"]


async def test_names_are_unique(env: Env) -> None:
    org = await env.org()
    names = {(await create_stream(env, org))["name"] for _ in range(20)}
    assert len(names) == 20


async def test_transcodes_need_the_transcoding_package(env: Env) -> None:
    without = await env.org(packages=["vod"])
    response = await env.client.post(
        "/api/stream", json={"transcodes": ["720p"]}, headers=without.api_headers
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "upgrade_needed"
    assert error["details"] == {"package": "transcoding", "title": "Transcoding"}
    assert (await env.client.post("/api/stream", json={}, headers=without.api_headers)).status_code == 201

    with_it = await env.org(packages=["transcoding"])
    stream = await create_stream(env, with_it, transcodes=["720p", "360p"])
    assert [r["rendition"] for r in stream["playout"]] == ["source", "720p", "360p"]
    assert stream["playout"][1]["streamName"] == f"{stream['name']}-720p"


BAD_BODIES: list[dict[str, Any]] = [
    {"transcodes": ["4k"]},
    {"transcodes": ["720p", "720p"]},
    {"tags": ["x" * 65]},
    {"tags": ["bad\ttab"]},
    {"tags": ["   "]},
    {"tags": [f"t{i}" for i in range(51)]},
    {"groupId": "has space"},
    {"tags": "news"},
]


async def test_bad_stream_bodies_are_422(env: Env) -> None:
    org = await env.org(packages=ALL_PACKAGES)
    for body in BAD_BODIES:
        response = await env.client.post("/api/stream", json=body, headers=org.api_headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    assert await count(env, Stream) == 0


async def test_list_filters_by_tags_state_and_group_and_paginates(env: Env) -> None:
    org = await env.org()
    other = await env.org()
    await create_stream(env, other, tags=["news"])  # never listed for org
    a = await create_stream(env, org, tags=["news", "region:eu"], groupId="g1")
    b = await create_stream(env, org, tags=["news"])
    c = await create_stream(env, org, tags=["sport"])
    await set_state(env, b["id"], "live")
    deleted = await create_stream(env, org, tags=["news"])
    assert (
        await env.client.delete(f"/api/stream/{deleted['id']}", headers=org.api_headers)
    ).status_code == 204

    async def ids(**params: Any) -> list[str]:
        response = await env.client.get("/api/stream", params=params, headers=org.api_headers)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["items"]]

    assert await ids() == [c["id"], b["id"], a["id"]]  # newest first, deleted left out
    assert await ids(tag="news") == [b["id"], a["id"]]
    assert await ids(tag=["news", "region:eu"]) == [a["id"]]
    assert await ids(state="live") == [b["id"]]
    assert await ids(state="deleted") == [deleted["id"]]
    assert await ids(groupId="g1") == [a["id"]]
    assert await ids(tag="nothing") == []

    first = (await env.client.get("/api/stream", params={"limit": 2}, headers=org.api_headers)).json()
    assert [s["id"] for s in first["items"]] == [c["id"], b["id"]] and first["nextCursor"]
    second = (
        await env.client.get(
            "/api/stream", params={"limit": 2, "cursor": first["nextCursor"]}, headers=org.api_headers
        )
    ).json()
    assert [s["id"] for s in second["items"]] == [a["id"]] and second["nextCursor"] is None
    bad = await env.client.get("/api/stream", params={"cursor": "%%%"}, headers=org.api_headers)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_cursor")
    assert (
        await env.client.get("/api/stream", params={"state": "paused"}, headers=org.api_headers)
    ).status_code == 422


# (state before, action, expected state after or None when refused with 409)
TRANSITIONS = [
    ("created", "stop", None),
    ("live", "stop", "ended"),
    ("ended", "stop", None),
    ("locked", "stop", None),
    ("created", "lock", "locked"),
    ("ended", "lock", "locked"),
    ("live", "lock", None),
    ("locked", "lock", None),
    ("locked", "unlock", "created"),
    ("created", "unlock", None),
    ("created", "delete", "deleted"),
    ("ended", "delete", "deleted"),
    ("live", "delete", None),
    ("locked", "delete", None),
    ("deleted", "delete", None),
    ("deleted", "unlock", None),
    ("deleted", "lock", None),
]


async def test_lifecycle_transitions(env: Env) -> None:
    org = await env.org()
    for before, action, after in TRANSITIONS:
        stream = await create_stream(env, org)
        await set_state(env, stream["id"], before, before_lock="created" if before == "locked" else None)
        if action == "delete":
            response = await env.client.delete(f"/api/stream/{stream['id']}", headers=org.api_headers)
        else:
            response = await env.client.post(f"/api/stream/{stream['id']}/{action}", headers=org.api_headers)
        state = (await env.client.get(f"/api/stream/{stream['id']}", headers=org.api_headers)).json()["state"]
        if after is None:
            assert response.status_code == 409, (before, action, response.text)
            error = response.json()["error"]
            assert error["code"] == "stream_state_conflict"
            assert (error["details"]["state"], error["details"]["action"]) == (before, action)
            assert state == before, (before, action)
        else:
            assert response.status_code in (200, 204), (before, action, response.text)
            assert state == after, (before, action)


async def test_unlock_returns_to_the_state_it_was_locked_in_and_delete_drops_tags(env: Env) -> None:
    org = await env.org()
    stream = await create_stream(env, org, tags=["keep", "drop"])
    sid = stream["id"]
    await set_state(env, sid, "ended")
    locked = await env.client.post(f"/api/stream/{sid}/lock", headers=org.api_headers)
    assert locked.json()["state"] == "locked"
    unlocked = await env.client.post(f"/api/stream/{sid}/unlock", headers=org.api_headers)
    assert unlocked.json()["state"] == "ended"

    assert await count(env, StreamTag, stream_id=uuid.UUID(sid)) == 2
    assert (await env.client.delete(f"/api/stream/{sid}", headers=org.api_headers)).status_code == 204
    assert await count(env, StreamTag, stream_id=uuid.UUID(sid)) == 0
    tags = (await env.client.get("/api/tag", headers=org.api_headers)).json()["items"]
    assert tags == []
    retag = await env.client.put(f"/api/stream/{sid}/tag", json={"tags": ["x"]}, headers=org.api_headers)
    assert (retag.status_code, retag.json()["error"]["code"]) == (409, "stream_state_conflict")

    changes = [(e.type, e.payload.get("change"), e.payload["state"]) for e in await events(env, org)]
    assert changes[1:] == [
        ("stream.updated", "lock", "locked"),
        ("stream.updated", "unlock", "ended"),
        ("stream.deleted", None, "deleted"),
    ]
    actions = [e.action for e in await audit_entries(env, org)]
    assert actions == ["stream.created", "stream.locked", "stream.unlocked", "stream.deleted"]


async def test_replacing_tags(env: Env) -> None:
    org = await env.org()
    stream = await create_stream(env, org, tags=["a", "b"])
    response = await env.client.put(
        f"/api/stream/{stream['id']}/tag", json={"tags": ["b", "c:d"]}, headers=org.api_headers
    )
    assert response.status_code == 200 and response.json()["tags"] == ["b", "c:d"]
    (event,) = await events(env, org, "stream.updated")
    assert event.payload["tags"] == ["b", "c:d"]
    (entry,) = await audit_entries(env, org, "stream.tags_updated")
    assert (entry.before, entry.after) == ({"tags": ["a", "b"]}, {"tags": ["b", "c:d"]})
    # The same tags again change nothing, and say nothing.
    await env.client.put(
        f"/api/stream/{stream['id']}/tag", json={"tags": ["c:d", "b"]}, headers=org.api_headers
    )
    assert len(await events(env, org, "stream.updated")) == 1


def test_ingest_and_playout_settings_must_be_urls_of_their_kind() -> None:
    with pytest.raises(SettingsError, match="STREAMWARD_INGEST_RTMP_URL"):
        load_settings(ingest_rtmp_url="http://ingest.example.com/live")
    with pytest.raises(SettingsError, match="STREAMWARD_PLAYOUT_BASE_URL"):
        load_settings(playout_base_url="rtmp://play.example.com/live")
    assert (
        load_settings(ingest_rtmp_url="rtmps://i.example.com/live/").ingest_rtmp_url
        == "rtmps://i.example.com/live"
    )
