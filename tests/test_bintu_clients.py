"""Real bintu clients against the stream API, one test per client of BINTU-WIRE.md section 5.

Each test replays what that client sends, as literally as the reference shows it (paths, bodies, the
headers the JS SDKs always send, even on GET: ``Accept`` and ``Content-Type: application/json``;
the header case a client uses), and asserts every field that client reads, with the type JavaScript
(or the Android SDK) expects, and the status it treats as success: exactly 200 for the JS SDKs.
Streamward serves the API under ``/api``: clients reach it with ``apiurl=https://host/api``.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from streamward.streams.schemas import PlayerStreamOut, StreamGroupOut, StreamOut
from tests.conftest import CreatedOrg, Env
from tests.support.data import ALL_PACKAGES, import_vod, set_state, use_fake_dns

API = "/api"  # the client's configured apiurl, minus the host
# What SDK05/SDKD/SDK13/NP4 send on every request, GET included.
SDK_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
# DIAG in player mode: no credentials, a charset on the content type.
DIAG_PLAYER_HEADERS = {"Accept": "application/json", "Content-Type": "application/json; charset=utf-8"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "ingest_rtmp_url": "rtmp://bintu-stream.example.com/live",
        "playout_rtmp_url": "rtmp://bintu-play.example.com/play",
        "playout_base_url": "https://bintu-hls.example.com/live",
        "h5live_websocket_url": "wss://bintu-h5live.example.com/h5live/stream",
        "h5live_hls_url": "https://bintu-h5live.example.com/h5live/http/playlist.m3u8",
        "h5live_progressive_url": "https://bintu-h5live.example.com/h5live/http/stream.mp4",
    }


def field(obj: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    """``obj`` at ``path`` ("playout.h5live[1].id"), asserting it is there with the JS-visible type.
    (bool is not an int here: JS would see true/false where it expects a number.)"""
    current = obj
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            assert isinstance(current, list), (path, current)
            index = int(part[1:-1])
            assert len(current) > index, (path, current)
            current = current[index]
        else:
            assert isinstance(current, dict) and part in current, (path, part, current)
            current = current[part]
    assert isinstance(current, kind) and not (isinstance(current, bool) and kind in (int, float)), (
        path,
        current,
    )
    return current


def sdk_success(response: httpx.Response) -> Any:
    """The JS SDKs: ``readyState === 4 && status === 200``, then JSON.parse of the body."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def sdk_failure(response: httpx.Response) -> dict[str, Any]:
    """WRTC reads error.code and error.message; MEET JSON.parses the body: never empty."""
    assert response.status_code != 200
    body: dict[str, Any] = response.json()
    field(body, "error.code", str)
    field(body, "error.message", str)
    return body


def check_player_fields(stream: dict[str, Any], index: int = 0) -> None:
    """What NP4 and the diag page read of one h5live entry (any non-string server value breaks
    NP4's ``.replace`` on it)."""
    field(stream, "id", str)
    field(stream, "state", str)
    field(stream, f"playout.h5live[{index}].rtmp.url", str)
    field(stream, f"playout.h5live[{index}].rtmp.streamname", str)
    server = field(stream, f"playout.h5live[{index}].server", dict)
    assert set(server) >= {"websocket", "hls", "progressive"}
    assert all(isinstance(value, str) and value for value in server.values())
    field(stream, f"playout.hls[{index}].url", str)
    field(stream, "playout.rtmp", list)


def assert_player_profile(stream: dict[str, Any]) -> None:
    """Nothing that lets anyone publish or administer."""
    assert set(stream) == {"id", "state", "playout", "streamgroup"}, stream
    PlayerStreamOut.model_validate(stream)


async def transcoding_org(env: Env) -> CreatedOrg:
    return await env.org(packages=ALL_PACKAGES)


# 1 -------------------------------------------------------------------------------------------------


async def test_webrtc_live_sdk05_webcaster(env: Env) -> None:
    """nanocosmos/webrtc.live: nano.bintu.0.5 + controller.js (browser webcaster)."""
    org = await env.org()
    headers = SDK_HEADERS | {"X-BINTU-APIKEY": org.api_key}
    gps = 'gps:{"lat":52.52,"lon":13.40}'
    tags = ["webrtc", "room:lobby", "user:anna", gps]
    created = sdk_success(
        await env.client.post(
            f"{API}/stream", json={"webrtc": True, "transcoding": False, "tags": tags}, headers=headers
        )
    )
    stream_id = field(created, "id", str)
    assert field(created, "state", str) == "created"
    ingest_url = field(created, "ingest.rtmp.url", str)
    streamname = field(created, "ingest.rtmp.streamname", str)
    assert ingest_url == "rtmp://bintu-stream.example.com/live" and streamname not in ingest_url
    field(created, "playout.rtmp[0].url", str)
    assert len(field(created, "playout.h5live", list)) >= 1
    assert sorted(field(created, "tags", list)) == sorted(tags)
    StreamOut.model_validate(created)

    # The SDK's other calls: read, list by tags[] and state (hand-built query), retag.
    read = sdk_success(await env.client.get(f"{API}/stream/{stream_id}", headers=headers))
    assert read["id"] == stream_id and read["ingest"] == created["ingest"]
    listed = sdk_success(
        await env.client.get(f"{API}/stream?tags[]=webrtc&tags[]=room:lobby&state=created", headers=headers)
    )
    assert isinstance(listed, list) and [s["id"] for s in listed] == [stream_id]
    retagged = sdk_success(
        await env.client.put(f"{API}/stream/{stream_id}/tag", json={"tags": ["webrtc"]}, headers=headers)
    )
    assert field(retagged, "id", str) == stream_id and field(retagged, "tags", list) == ["webrtc"]

    # Errors: the controller reads error.code, error.message (and userinfo when there is one).
    refused = sdk_failure(
        await env.client.post(f"{API}/stream", json={}, headers=SDK_HEADERS | {"X-BINTU-APIKEY": "swk_wrong"})
    )
    assert refused["error"]["code"] == "unauthenticated"


# 2 -------------------------------------------------------------------------------------------------


async def test_sdk07_webcast_minimal_player_key_and_push_url(env: Env) -> None:
    """nanostream/webrtc-webcast-samples: nano.bintu.0.7 (player-key mode, push_url)."""
    use_fake_dns(env)
    org = await env.org()
    other = await env.org()
    api = SDK_HEADERS | {"X-BINTU-APIKEY": org.api_key}
    tagged = sdk_success(
        await env.client.post(
            f"{API}/stream", json={"webrtc": True, "transcoding": False, "tags": ["show"]}, headers=api
        )
    )
    sdk_success(
        await env.client.post(f"{API}/stream", json={"webrtc": True, "transcoding": False}, headers=api)
    )
    await env.client.post(f"{API}/stream", json={"tags": ["show"]}, headers=other.api_headers)

    # Player-key mode: only with tags, only this organisation's streams, the player profile.
    player = SDK_HEADERS | {"X-BINTU-PLAYERKEY": org.organisation.player_key}
    listed = sdk_success(await env.client.get(f"{API}/stream?tags[]=show", headers=player))
    assert [s["id"] for s in listed] == [tagged["id"]]
    assert_player_profile(listed[0])
    check_player_fields(listed[0])
    untagged = await env.client.get(f"{API}/stream", headers=player)
    assert (untagged.status_code, sdk_failure(untagged)["error"]["code"]) == (400, "tags_required")

    # push_url: stored, 200 with the stream, shown to credentialed readers who may change it.
    pushed = sdk_success(
        await env.client.put(
            f"{API}/stream/{tagged['id']}/push_url",
            json={"url": "rtmp://hooks.example.com/live/key"},
            headers=api,
        )
    )
    assert field(pushed, "push_url", str) == "rtmp://hooks.example.com/live/key"
    assert sdk_success(await env.client.get(f"{API}/stream/{tagged['id']}", headers=api))["push_url"] == (
        "rtmp://hooks.example.com/live/key"
    )
    refused = await env.client.put(
        f"{API}/stream/{tagged['id']}/push_url", json={"url": "rtmp://intranet.example.com/live"}, headers=api
    )
    assert (refused.status_code, sdk_failure(refused)["error"]["code"]) == (400, "push_url_refused")
    # The player key writes nothing.
    as_player = await env.client.put(
        f"{API}/stream/{tagged['id']}/push_url", json={"url": "rtmp://hooks.example.com/x"}, headers=player
    )
    assert as_player.status_code == 401


# 3 -------------------------------------------------------------------------------------------------


async def test_diag_page_sdkd_bintusource(env: Env) -> None:
    """nanocosmos/demo diag: bintu.js v0.5 (POST with {tags} or no body at all) + bintusource.js
    (player mode: GET /stream/{id} without credentials)."""
    org = await env.org()
    api = SDK_HEADERS | {"X-BINTU-APIKEY": org.api_key}
    bare = sdk_success(await env.client.post(f"{API}/stream", headers=api))  # no tags: no body
    with_tags = sdk_success(await env.client.post(f"{API}/stream", json={"tags": ["diag"]}, headers=api))
    assert bare["tags"] == [] and with_tags["tags"] == ["diag"]
    # SDKD clears tags with a PUT without a body.
    cleared = sdk_success(await env.client.put(f"{API}/stream/{with_tags['id']}/tag", headers=api))
    assert cleared["tags"] == []

    for stream in (bare, with_tags):
        read = sdk_success(await env.client.get(f"{API}/stream/{stream['id']}", headers=DIAG_PLAYER_HEADERS))
        assert_player_profile(read)
        check_player_fields(read)
        assert read["playout"]["h5live"][0]["rtmp"]["streamname"] == stream["ingest"]["rtmp"]["streamname"]
        assert field(read, "playout.rtmp[0].streamname", str) == stream["ingest"]["rtmp"]["streamname"]


# 4 -------------------------------------------------------------------------------------------------


async def test_nanoplayer_np4_stream_and_group(env: Env) -> None:
    """nanoplayer 4.24 (and 5.0 preview): GET /stream/{id}?profile=player and
    GET /stream/{id}/group?profile=player, anonymous; any non-200 is setup error 5103."""
    org = await transcoding_org(env)
    body = {
        "tags": ["abr"],
        "transcodes": [{"profile": "vtrans2-852x480x800x25"}, {"profile": "vtrans2-640x360x400x25"}],
    }
    created = sdk_success(await env.client.post(f"{API}/stream", json=body, headers=org.api_headers))
    stream = sdk_success(
        await env.client.get(f"{API}/stream/{created['id']}?profile=player", headers=SDK_HEADERS)
    )
    assert_player_profile(stream)
    check_player_fields(stream)
    # NP4's "not live" test: rtmp && !rtmp.length && !h5live || h5live && !h5live.length
    assert stream["playout"]["h5live"] and stream["playout"]["rtmp"]

    group = sdk_success(
        await env.client.get(f"{API}/stream/{created['id']}/group?profile=player", headers=SDK_HEADERS)
    )
    StreamGroupOut.model_validate(group)
    field(group, "id", str)
    assert field(group, "state", str) == "created"
    h5live = field(group, "playout.h5live", list)
    assert len(h5live) == 3 and len(field(group, "playout.hls", list)) == 3
    for i, entry in enumerate(h5live):
        check_player_fields(group, i)
        assert field(group, f"playout.h5live[{i}].index", int) == i
        for key in ("width", "height", "bitrate", "fps"):
            field(group, f"playout.h5live[{i}].info.{key}", int)
        field(group, f"playout.h5live[{i}].label", str)
        # hls[i] is the same rendition as h5live[i]
        assert entry["rtmp"]["streamname"] in group["playout"]["hls"][i]["url"]
    assert h5live[1]["info"] == {"width": 852, "height": 480, "bitrate": 800, "fps": 25}
    field(group, "playout.rtmp", list)


# 5 -------------------------------------------------------------------------------------------------


async def test_multi_page_sdk13_stream_list(env: Env) -> None:
    """nanocosmos/demo multi: nano.bintu.js 1.3 + nano.main.js, polling
    GET /stream?tags[]=..&state=.. with the API key, the body used as an array."""
    org = await env.org(packages=ALL_PACKAGES)
    api = SDK_HEADERS | {"X-BINTU-APIKEY": org.api_key}
    gps = '{"lat":48.1,"lon":11.5}'
    first = sdk_success(await env.client.post(f"{API}/stream", json={"tags": ["multi", gps]}, headers=api))
    second = sdk_success(await env.client.post(f"{API}/stream", json={"tags": ["multi"]}, headers=api))
    await set_state(env, first["id"], "live")
    await set_state(env, second["id"], "live")
    await import_vod(env, org, streamId=first["id"], url="https://cdn.example.com/first.mp4")

    listed = sdk_success(await env.client.get(f"{API}/stream?tags[]=multi&state=live", headers=api))
    assert isinstance(listed, list) and len(listed) == 2
    assert [s["id"] for s in listed] == [second["id"], first["id"]]  # newest first
    for s in listed:
        StreamOut.model_validate(s)
        field(s, "id", str)
        field(s, "ingest.rtmp.streamname", str)
        field(s, "playout.rtmp[0].url", str)
        field(s, "playout.rtmp[0].streamname", str)
        assert [t for t in field(s, "tags", list) if t.startswith("{")] == ([gps] if s is listed[1] else [])
        assert field(s, "state", str) == "live"
        for k, _ in enumerate(field(s, "playout.web", list)):
            field(s, f"playout.web[{k}].type", str)
            field(s, f"playout.web[{k}].url", str)
    # The page looks for recordings by playout.web[k].type == "vod".
    vods = [w for w in listed[1]["playout"]["web"] if w["type"] == "vod"]
    assert [w["url"] for w in vods] == ["https://cdn.example.com/first.mp4"]
    # GPS tags as typed in the text box: the raw JSON tag, not URL-encoded.
    by_gps = sdk_success(await env.client.get(f"{API}/stream?tags[]={gps}&state=live", headers=api))
    assert [s["id"] for s in by_gps] == [first["id"]]


# 6 -------------------------------------------------------------------------------------------------


async def test_multistream_helper_group_tags(env: Env) -> None:
    """nanoplayer-helper-multistream.js: GET /stream?state=live&tags[]=group:<g>; reads
    h5live[0].rtmp and .server, and the group:/bitrate: tags."""
    org = await env.org()
    api = SDK_HEADERS | {"x-bintu-apikey": org.api_key}
    made = []
    for bitrate in ("1200", "800"):
        stream = sdk_success(
            await env.client.post(
                f"{API}/stream", json={"tags": ["group:stage", f"bitrate:{bitrate}"]}, headers=api
            )
        )
        await set_state(env, stream["id"], "live")
        made.append(stream)
    listed = sdk_success(await env.client.get(f"{API}/stream?state=live&tags[]=group:stage", headers=api))
    assert len(listed) == 2
    for s in listed:
        check_player_fields(s)
        tags = field(s, "tags", list)
        assert any(t.startswith("group:") for t in tags)  # the helper's tags[i].indexOf("group:") == 0
        assert any(t.startswith("bitrate:") for t in tags)


# 7 -------------------------------------------------------------------------------------------------


async def test_replay_group_source_by_stream_name(env: Env) -> None:
    """nanocosmos/replay nano-play.html: NP4's group source with apiurl, a stream *name* as group id."""
    org = await transcoding_org(env)
    created = sdk_success(
        await env.client.post(
            f"{API}/stream",
            json={"tags": ["replay"], "transcodes": ["vtrans2-640x360x400x25"]},
            headers=org.api_headers,
        )
    )
    name = created["ingest"]["rtmp"]["streamname"]
    by_name = sdk_success(
        await env.client.get(f"{API}/stream/{name}/group?profile=player", headers=SDK_HEADERS)
    )
    by_id = sdk_success(
        await env.client.get(f"{API}/stream/{created['id']}/group?profile=player", headers=SDK_HEADERS)
    )
    assert by_name == by_id
    assert len(by_name["playout"]["h5live"]) == 2
    check_player_fields(by_name, 1)


# 8 -------------------------------------------------------------------------------------------------


async def test_nanomeet_transcodes_and_organisation(env: Env) -> None:
    """nanostream/nanomeet-frontend nanomeet.js: GET /organisation with a lower-case x-bintu-apikey,
    then POST /stream with two transcodes; reads h5live[1].id and h5live[2].id."""
    org = await transcoding_org(env)
    headers = {"content-type": "application/json", "x-bintu-apikey": org.api_key}
    organisation = await env.client.get(f"{API}/organisation", headers=headers)
    assert organisation.status_code == 200 and isinstance(organisation.json(), dict)
    body = {
        "tags": ["nanoMeet"],
        "transcodes": [
            {"profile": "vtrans2-852x480x800x25", "tags": ["nanoMeet", "480p"]},
            {"profile": "vtrans2-640x360x400x25", "tags": ["nanoMeet", "360p"]},
        ],
    }
    created = sdk_success(await env.client.post(f"{API}/stream", json=body, headers=headers))
    stream_id = field(created, "id", str)
    first, second = field(created, "playout.h5live[1].id", str), field(created, "playout.h5live[2].id", str)
    assert len({stream_id, first, second}) == 3
    # Failures are JSON it can parse (it reads top-level `message`, harmlessly missing).
    bad = dict(body, transcodes=[{"profile": "vtrans2-huge"}])
    failed = sdk_failure(await env.client.post(f"{API}/stream", json=bad, headers=headers))
    assert failed["error"]["code"] == "invalid_transcode_profile"
    without = await env.org()
    gated = await env.client.post(
        f"{API}/stream", json=body, headers=headers | {"x-bintu-apikey": without.api_key}
    )
    assert (gated.status_code, sdk_failure(gated)["error"]["code"]) == (403, "upgrade_needed")


# 9 -------------------------------------------------------------------------------------------------


async def test_react_app_stream_lifecycle(env: Env) -> None:
    """Community React app: POST /stream without a body, PUT stop, DELETE; success = res.ok."""
    org = await env.org()
    headers = {"X-BINTU-APIKEY": org.api_key}
    response = await env.client.post(f"{API}/stream", headers=headers)
    assert response.is_success
    data = response.json()
    field(data, "ingest.rtmp.streamname", str)
    stream_id = field(data, "id", str)
    # It keeps STREAM_INFO and STREAM_GROUP_INFO URLs.
    assert (await env.client.get(f"{API}/stream/{stream_id}", headers=headers)).is_success
    assert (await env.client.get(f"{API}/stream/{stream_id}/group", headers=headers)).is_success
    await set_state(env, stream_id, "live")
    stopped = await env.client.put(f"{API}/stream/{stream_id}/stop", headers=headers)
    assert stopped.is_success and stopped.json()["state"] == "ended"
    deleted = await env.client.delete(f"{API}/stream/{stream_id}", headers=headers)
    assert deleted.is_success and deleted.json()["state"] == "deleted"


# 10 ------------------------------------------------------------------------------------------------


async def test_cakephp_streams_controller(env: Env) -> None:
    """Community CakePHP StreamsController: POST /stream {tags}; failure = an `error` key."""
    org = await env.org()
    response = await env.client.post(
        f"{API}/stream",
        json={"tags": ["php"]},
        headers={"Content-Type": "application/json", "X-BINTU-APIKEY": org.api_key},
    )
    body = response.json()
    assert "error" not in body
    stored = {
        "id": field(body, "id", str),
        "streamname": field(body, "ingest.rtmp.streamname", str),
        "ingest": field(body, "ingest.rtmp.url", str),
        "rtmp": field(body, "playout.rtmp[0].url", str),
        "hls": field(body, "playout.hls[0].url", str),
    }
    assert stored["hls"].endswith(f"/{stored['streamname']}/index.m3u8")
    refused = await env.client.post(
        f"{API}/stream", json={"tags": ["php"]}, headers={"X-BINTU-APIKEY": "nope"}
    )
    assert "error" in refused.json()


# 11 ------------------------------------------------------------------------------------------------


async def test_casino_page_anonymous_getjson(env: Env) -> None:
    """Community jQuery casino page: $.getJSON(GET /stream/{id}), anonymous; passes playout.rtmp[0]
    to the player as its rtmp config."""
    org = await env.org()
    created = sdk_success(
        await env.client.post(f"{API}/stream", json={"tags": ["table-7"]}, headers=org.api_headers)
    )
    response = await env.client.get(
        f"{API}/stream/{created['id']}", headers={"Accept": "application/json, text/javascript, */*; q=0.01"}
    )
    stream = sdk_success(response)
    rtmp = field(stream, "playout.rtmp[0]", dict)
    assert field(rtmp, "url", str).startswith("rtmp://") and field(rtmp, "streamname", str)
    assert_player_profile(stream)


# 14 ------------------------------------------------------------------------------------------------


async def test_android_bintu_player_and_encoder(env: Env) -> None:
    """nanocosmos/android-samples (closed BintuSDK; wire as SDK05): the encoder reads the ingest,
    the player's stream list reads web and rtmp playouts and tags, filtered by tags."""
    org = await env.org()
    api = {"X-BINTU-APIKEY": org.api_key, "Accept": "application/json"}
    created = sdk_success(await env.client.post(f"{API}/stream", json={"tags": ["android"]}, headers=api))
    # BintuEncoder: getIngest().getUrl() / getStreamName()
    field(created, "ingest.rtmp.url", str)
    field(created, "ingest.rtmp.streamname", str)
    # BintuPlayer StreamListActivity / StreamListAdapter
    listed = sdk_success(await env.client.get(f"{API}/stream?tags[]=android", headers=api))
    assert TypeAdapter(list[StreamOut]).validate_python(listed)
    (stream,) = listed
    for k, _ in enumerate(field(stream, "playout.web", list)):
        field(stream, f"playout.web[{k}].url", str)
    for k, _ in enumerate(field(stream, "playout.rtmp", list)):
        field(stream, f"playout.rtmp[{k}].url", str)
        field(stream, f"playout.rtmp[{k}].streamname", str)
    assert field(stream, "tags", list) == ["android"]
