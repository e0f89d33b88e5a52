"""Streams: creation with generated names, the bintu stream object (ingest and playout from the
settings), listing as a bare array with filters and Link-header paging, the lifecycle (refused
transitions are 409), events and audit."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from streamward.config import SettingsError, load_settings
from streamward.migrate import upgrade
from streamward.streams.models import Stream, StreamTag
from streamward.streams.schemas import StreamOut
from tests.conftest import Env
from tests.support.data import ALL_PACKAGES, audit_entries, count, create_stream, events, set_state


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "ingest_rtmp_url": "rtmp://ingest.example.com:1935/live/",
        "playout_base_url": "https://play.example.com/hls",
        "playout_rtmp_url": "rtmp://play.example.com/play",
        "h5live_websocket_url": "wss://h5.example.com/h5live/stream",
        "h5live_hls_url": "https://h5.example.com/h5live/http/playlist.m3u8",
        "h5live_progressive_url": "https://h5.example.com/h5live/http/stream.mp4",
        "web_player_url": "https://www.example.com/player",
    }


SERVER = {
    "websocket": "wss://h5.example.com/h5live/stream",
    "hls": "https://h5.example.com/h5live/http/playlist.m3u8",
    "progressive": "https://h5.example.com/h5live/http/stream.mp4",
}


async def test_create_returns_name_state_ingest_playout_tags(env: Env) -> None:
    org = await env.org()
    operator = await env.member(org, "nanoUser")
    response = await env.client.post(
        "/api/stream",
        json={"tags": ["news", " region:eu ", "news"], "groupId": "stage-1"},
        headers=operator.headers,
    )
    assert response.status_code == 200, response.text
    stream = response.json()
    name = stream["name"]
    assert re.fullmatch(r"[a-z0-9]{5}-[a-z0-9]{5}", name)
    assert stream["state"] == "created" and stream["type"] == "live"
    assert stream["tags"] == ["news", "region:eu"]  # trimmed, de-duplicated, sorted
    assert stream["streamgroup"] == "stage-1" and stream["push_url"] is None
    assert stream["ingest"] == {"rtmp": {"url": "rtmp://ingest.example.com:1935/live", "streamname": name}}
    assert stream["playout"] == {
        "rtmp": [{"url": "rtmp://play.example.com/play", "streamname": name, "type": "live"}],
        "hls": [{"url": f"https://play.example.com/hls/{name}/index.m3u8", "type": "live"}],
        "web": [{"url": f"https://www.example.com/player?streamname={name}", "type": "live"}],
        "h5live": [
            {
                "id": stream["id"],
                "index": 0,
                "rtmp": {"url": "rtmp://play.example.com/play", "streamname": name},
                "server": SERVER,
                "info": {"width": 0, "height": 0, "bitrate": 0, "fps": 0},
                "label": "passthrough",
            }
        ],
    }
    assert stream["created_at"].endswith("Z")
    StreamOut.model_validate(stream)
    assert (await env.client.get(f"/api/stream/{stream['id']}", headers=operator.headers)).json() == stream

    (event,) = await events(env, org=org, type="stream.created")
    assert event.payload == {
        "id": stream["id"],
        "name": stream["name"],
        "state": "created",
        "tags": stream["tags"],
    }
    (entry,) = await audit_entries(env, org=org, action="stream.created")
    assert entry.actor == f"user:{operator.id}" and entry.target_id == stream["id"]


async def test_names_are_unique(env: Env) -> None:
    org = await env.org()
    names = {(await create_stream(env, org))["name"] for _ in range(20)}
    assert len(names) == 20


async def test_transcodes_need_the_transcoding_package(env: Env) -> None:
    without = await env.org(packages=["vod"])
    body = {"transcodes": [{"profile": "vtrans2-1280x720x2500x30"}]}
    response = await env.client.post("/api/stream", json=body, headers=without.api_headers)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "upgrade_needed"
    assert error["details"] == {"package": "transcoding", "title": "Transcoding"}
    assert (await env.client.post("/api/stream", json={}, headers=without.api_headers)).status_code == 200

    with_it = await env.org(packages=["transcoding"])
    stream = await create_stream(
        env, with_it, transcodes=[{"profile": "vtrans2-1280x720x2500x30", "tags": ["hd"]}, "vtrans-400k"]
    )
    h5live = stream["playout"]["h5live"]
    assert [r["label"] for r in h5live] == ["passthrough", "1280x720 2500kbps", "400kbps"]
    assert [r["index"] for r in h5live] == [0, 1, 2]
    assert h5live[1]["info"] == {"width": 1280, "height": 720, "bitrate": 2500, "fps": 30}
    assert h5live[2]["info"] == {"width": 0, "height": 0, "bitrate": 400, "fps": 0}
    assert h5live[1]["tags"] == ["hd"] and "tags" not in h5live[2]
    assert h5live[1]["rtmp"]["streamname"] == f"{stream['name']}-1"
    assert len({r["id"] for r in h5live}) == 3 and h5live[0]["id"] == stream["id"]
    hls = [entry["url"] for entry in stream["playout"]["hls"]]
    assert hls == [f"https://play.example.com/hls/{r['rtmp']['streamname']}/index.m3u8" for r in h5live]
    # Stored: the same renditions, ids included, on every read.
    again = await env.client.get(f"/api/stream/{stream['id']}", headers=with_it.api_headers)
    assert again.json()["playout"] == stream["playout"]


BAD_BODIES: list[dict[str, Any]] = [
    {"tags": ["x" * 65]},
    {"tags": ["bad\ttab"]},
    {"tags": ["   "]},
    {"tags": [f"t{i}" for i in range(51)]},
    {"groupId": "has space"},
    {"tags": "news"},
    {"type": "x" * 33},
    {"transcodes": [{"profile": 720}]},
]

BAD_PROFILES: list[Any] = [
    ["4k"],
    ["720p"],
    [{"profile": "vtrans2-852x480x800"}],
    [{"profile": "vtrans2-0x480x800x25"}],
    [{"profile": "vtrans2-852x480x0x25"}],
    [{"profile": "vtrans2-852x480x800x999"}],
    [{"profile": "vtrans3-800k"}],
    [{"tags": ["no profile"]}],
    ["vtrans2-800k", "vtrans2-800k"],
    [f"vtrans2-{100 + i}k" for i in range(9)],
]


async def test_bad_stream_bodies_are_422_and_bad_profiles_400(env: Env) -> None:
    org = await env.org(packages=ALL_PACKAGES)
    for body in BAD_BODIES:
        response = await env.client.post("/api/stream", json=body, headers=org.api_headers)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    for transcodes in BAD_PROFILES:
        response = await env.client.post(
            "/api/stream", json={"transcodes": transcodes}, headers=org.api_headers
        )
        assert response.status_code == 400, (transcodes, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_transcode_profile" and error["message"], error
    # Refused before the package gate too: the client learns what is wrong with its request.
    bare = await env.org()
    response = await env.client.post("/api/stream", json={"transcodes": ["4k"]}, headers=bare.api_headers)
    assert response.json()["error"]["code"] == "invalid_transcode_profile"
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
    ).status_code == 200

    async def ids(**params: Any) -> list[str]:
        response = await env.client.get("/api/stream", params=params, headers=org.api_headers)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()]

    assert await ids() == [c["id"], b["id"], a["id"]]  # newest first, deleted left out
    assert await ids(tag="news") == [b["id"], a["id"]]
    assert await ids(tag=["news", "region:eu"]) == [a["id"]]
    assert await ids(**{"tags[]": ["news", "region:eu"]}) == [a["id"]]
    assert await ids(state="live") == [b["id"]]
    assert await ids(state="deleted") == [deleted["id"]]
    assert await ids(groupId="g1") == [a["id"]]
    assert await ids(tag="nothing") == []

    first = await env.client.get("/api/stream", params={"quantity": 2}, headers=org.api_headers)
    assert [s["id"] for s in first.json()] == [c["id"], b["id"]]
    assert first.links["next"]["url"].startswith("/api/stream?")
    second = await env.client.get(first.links["next"]["url"], headers=org.api_headers)
    assert [s["id"] for s in second.json()] == [a["id"]] and "Link" not in second.headers
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
        else:  # bintu clients PUT; the first API POSTed: both are served
            method = "PUT" if len(action) % 2 else "POST"
            response = await env.client.request(
                method, f"/api/stream/{stream['id']}/{action}", headers=org.api_headers
            )
        state = (await env.client.get(f"/api/stream/{stream['id']}", headers=org.api_headers)).json()["state"]
        if after is None:
            assert response.status_code == 409, (before, action, response.text)
            error = response.json()["error"]
            assert error["code"] == "stream_state_conflict"
            assert (error["details"]["state"], error["details"]["action"]) == (before, action)
            assert state == before, (before, action)
        else:
            assert response.status_code == 200, (before, action, response.text)
            assert response.json()["state"] == state == after, (before, action)


async def test_unlock_returns_to_the_state_it_was_locked_in_and_delete_drops_tags(env: Env) -> None:
    org = await env.org()
    stream = await create_stream(env, org, tags=["keep", "drop"])
    sid = stream["id"]
    await set_state(env, sid, "ended")
    locked = await env.client.put(f"/api/stream/{sid}/lock", headers=org.api_headers)
    assert locked.json()["state"] == "locked"
    unlocked = await env.client.put(f"/api/stream/{sid}/unlock", headers=org.api_headers)
    assert unlocked.json()["state"] == "ended"

    assert await count(env, StreamTag, stream_id=uuid.UUID(sid)) == 2
    deleted = await env.client.delete(f"/api/stream/{sid}", headers=org.api_headers)
    assert (deleted.status_code, deleted.json()["state"], deleted.json()["tags"]) == (200, "deleted", [])
    assert await count(env, StreamTag, stream_id=uuid.UUID(sid)) == 0
    tags = (await env.client.get("/api/tag", headers=org.api_headers)).json()["items"]
    assert tags == []
    retag = await env.client.put(f"/api/stream/{sid}/tag", json={"tags": ["x"]}, headers=org.api_headers)
    assert (retag.status_code, retag.json()["error"]["code"]) == (409, "stream_state_conflict")

    changes = [(e.type, e.payload.get("change"), e.payload["state"]) for e in await events(env, org=org)]
    assert changes[1:] == [
        ("stream.updated", "lock", "locked"),
        ("stream.updated", "unlock", "ended"),
        ("stream.deleted", None, "deleted"),
    ]
    actions = [e.action for e in await audit_entries(env, org=org)]
    assert actions == ["stream.created", "stream.locked", "stream.unlocked", "stream.deleted"]


async def test_replacing_tags(env: Env) -> None:
    org = await env.org()
    stream = await create_stream(env, org, tags=["a", "b"])
    response = await env.client.put(
        f"/api/stream/{stream['id']}/tag", json={"tags": ["b", "c:d"]}, headers=org.api_headers
    )
    assert response.status_code == 200 and response.json()["tags"] == ["b", "c:d"]
    (event,) = await events(env, org=org, type="stream.updated")
    assert event.payload["tags"] == ["b", "c:d"]
    (entry,) = await audit_entries(env, org=org, action="stream.tags_updated")
    assert (entry.before, entry.after) == ({"tags": ["a", "b"]}, {"tags": ["b", "c:d"]})
    # The same tags again change nothing, and say nothing.
    await env.client.put(
        f"/api/stream/{stream['id']}/tag", json={"tags": ["c:d", "b"]}, headers=org.api_headers
    )
    assert len(await events(env, org=org, type="stream.updated")) == 1


def test_ingest_and_playout_settings_must_be_urls_of_their_kind() -> None:
    with pytest.raises(SettingsError, match="STREAMWARD_INGEST_RTMP_URL"):
        load_settings(ingest_rtmp_url="http://ingest.example.com/live")
    with pytest.raises(SettingsError, match="STREAMWARD_PLAYOUT_BASE_URL"):
        load_settings(playout_base_url="rtmp://play.example.com/live")
    with pytest.raises(SettingsError, match="STREAMWARD_PLAYOUT_RTMP_URL"):
        load_settings(playout_rtmp_url="https://play.example.com/live")
    with pytest.raises(SettingsError, match="STREAMWARD_H5LIVE_WEBSOCKET_URL"):
        load_settings(h5live_websocket_url="https://h5.example.com/stream")
    with pytest.raises(SettingsError, match="STREAMWARD_H5LIVE_HLS_URL"):
        load_settings(h5live_hls_url="ws://h5.example.com/playlist.m3u8")
    assert (
        load_settings(ingest_rtmp_url="rtmps://i.example.com/live/").ingest_rtmp_url
        == "rtmps://i.example.com/live"
    )


def test_migration_turns_first_api_transcodes_into_renditions(tmp_path: Path) -> None:
    """Streams created by the first stream API keep their renditions (and playout names) across
    0007, and each organisation gets its player key's digest."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}", "0006_merge")
    engine = create_engine(url)
    org_id, stream_id = uuid.uuid4(), uuid.uuid4()
    now = "2024-01-01 00:00:00.000000"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO organisation (id, name, support_level, analytics_level, trial, packages,"
                " webhook_events, vod_public, api_key_hash, api_key_sealed, player_key, created_at)"
                " VALUES (:id, 'Old', 'basic', 'basic', 0, '[]', '[]', 0, 'h', 's', 'swp_old', :now)"
            ),
            {"id": org_id.hex, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO stream (id, organisation_id, name, state, transcodes, created_at, updated_at)"
                " VALUES (:id, :org, 'abcde-12345', 'created', :t, :now, :now)"
            ),
            {"id": stream_id.hex, "org": org_id.hex, "t": json.dumps(["720p", "240p"]), "now": now},
        )
    upgrade(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    with engine.connect() as conn:
        transcodes = json.loads(conn.execute(text("SELECT transcodes FROM stream")).scalar_one())
        digest, required = conn.execute(
            text("SELECT player_key_hash, player_token_required FROM organisation")
        ).one()
        stream_type = conn.execute(text("SELECT type FROM stream")).scalar_one()
    engine.dispose()
    assert [(t["profile"], t["width"], t["height"], t["streamname"]) for t in transcodes] == [
        ("720p", 1280, 720, "abcde-12345-720p"),
        ("240p", 426, 240, "abcde-12345-240p"),
    ]
    assert all(uuid.UUID(t["id"]) and t["bitrate"] > 0 for t in transcodes)
    assert digest == hashlib.sha256(b"swp_old").hexdigest() and not required and stream_type == "live"
