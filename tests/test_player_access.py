"""The ``player`` access rule of the bintu stream reads (streams/player.py), as a matrix:
anonymous readers, the player key, credentials; another organisation's stream, locked and deleted
streams, an organisation requiring playback tokens; the player key on every other route. Plus the
"playback token required" setting itself, the hashed player-key lookup, and what the player profile
leaves out."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from streamward.orgs.models import Organisation
from tests.conftest import CreatedOrg, Env, SignIn
from tests.support.data import (
    ALL_PACKAGES,
    audit_entries,
    create_stream,
    import_vod,
    playback_token,
    set_state,
    use_fake_dns,
)
from tests.support.pages import flash_of, followed, submit

PLAYER_FIELDS = {"id", "state", "playout", "streamgroup"}
READ_PATHS = ("/api/stream/{id}", "/api/stream/{id}?profile=player", "/api/stream/{id}/group?profile=player")


def player(org: CreatedOrg) -> dict[str, str]:
    return {"X-BINTU-PLAYERKEY": org.organisation.player_key}


async def get(env: Env, path: str, headers: dict[str, str] | None = None, **params: Any) -> httpx.Response:
    """GET ``path`` (which may carry a query already) with ``params`` added to its query."""
    return await env.client.get(httpx.URL(path).copy_merge_params(params), headers=headers or {})


def status_code(response: httpx.Response) -> tuple[int, str | None]:
    body = response.json()
    return response.status_code, body["error"]["code"] if isinstance(body, dict) and "error" in body else None


async def test_anonymous_and_player_key_reads_matrix(env: Env) -> None:
    mine = await env.org()
    theirs = await env.org()
    streams = {
        "mine": await create_stream(env, mine, tags=["t"]),
        "locked": await create_stream(env, mine, tags=["t"]),
        "deleted": await create_stream(env, mine, tags=["t"]),
        "ended": await create_stream(env, mine, tags=["t"]),
        "theirs": await create_stream(env, theirs, tags=["t"]),
    }
    await set_state(env, streams["locked"]["id"], "locked", before_lock="created")
    await set_state(env, streams["ended"]["id"], "ended")
    await env.client.delete(f"/api/stream/{streams['deleted']['id']}", headers=mine.api_headers)

    # (who, stream) -> expected status; anonymous players know no organisation, so any playable
    # stream can be read by id; the player key confines them to its organisation.
    expected = {
        ("anonymous", "mine"): 200,
        ("anonymous", "ended"): 200,
        ("anonymous", "locked"): 404,
        ("anonymous", "deleted"): 404,
        ("anonymous", "theirs"): 200,
        ("player key", "mine"): 200,
        ("player key", "ended"): 200,
        ("player key", "locked"): 404,
        ("player key", "deleted"): 404,
        ("player key", "theirs"): 404,
    }
    readers = {"anonymous": {}, "player key": player(mine)}
    failures = []
    for (who, which), status in expected.items():
        for template in READ_PATHS:
            path = template.format(id=streams[which]["id"])
            response = await get(env, path, readers[who])
            if response.status_code != status:
                failures.append(f"{who} {which} {path}: {response.status_code} {response.text[:120]}")
            elif status == 200 and "/group" not in path:
                assert set(response.json()) == PLAYER_FIELDS, response.json()
            elif status == 404:
                assert status_code(response) == (404, "not_found")
    assert not failures, "\n".join(failures)
    # Credentials see their own locked and deleted streams, in full; others' are not found.
    for which in ("locked", "deleted"):
        full = await get(env, f"/api/stream/{streams[which]['id']}", mine.api_headers)
        assert full.status_code == 200 and "ingest" in full.json()
    other = await get(env, f"/api/stream/{streams['theirs']['id']}", mine.api_headers)
    assert status_code(other) == (404, "not_found")
    # Sent credentials must be valid: no falling back to the anonymous profile.
    for headers in (
        {"X-BINTU-APIKEY": "swk_nope"},
        {"X-BINTU-TOKEN": "swt_nope"},
        {"X-BINTU-PLAYERKEY": "swp_x"},
    ):
        refused = await get(env, f"/api/stream/{streams['mine']['id']}", headers)
        assert status_code(refused) == (401, "unauthenticated"), headers
    unknown = await get(env, "/api/stream/not-a-uuid")
    assert status_code(unknown) == (404, "not_found")


async def test_player_profile_leaves_out_ingest_tags_and_push_target(env: Env) -> None:
    org = await env.org()
    stream = await create_stream(env, org, tags=["secret-event"], groupId="stage")
    for headers, params in (({}, {}), ({}, {"profile": "player"}), (org.api_headers, {"profile": "player"})):
        body = (await get(env, f"/api/stream/{stream['id']}", headers, **params)).json()
        assert set(body) == PLAYER_FIELDS and body["streamgroup"] == "stage"
        assert "secret-event" not in str(body) and stream["ingest"]["rtmp"]["url"] not in str(body)
    full = (await get(env, f"/api/stream/{stream['id']}", org.api_headers)).json()
    assert {"ingest", "tags", "push_url"} <= set(full)


async def test_anonymous_group_read_by_the_streamgroup_a_stream_reports(env: Env) -> None:
    """NP4 is configured with the ``streamgroup`` of a stream and reads the group without
    credentials. Group ids are only unique within an organisation: the one that used the id first
    keeps it, so another organisation taking the same id later can neither take over nor break it."""
    org = await env.org()
    first = await create_stream(env, org, groupId="main-stage")
    await create_stream(env, org, groupId="main-stage")
    group = await get(env, f"/api/stream/{first['streamgroup']}/group", profile="player")
    assert group.status_code == 200, group.text
    assert len(group.json()["playout"]["h5live"]) == 2
    assert len(group.json()["playout"]["hls"]) == 2

    other = await env.org()
    squatter = await create_stream(env, other, groupId="main-stage")
    still_first = await get(env, "/api/stream/main-stage/group", profile="player")
    assert still_first.status_code == 200, still_first.text
    assert squatter["id"] not in {entry["id"] for entry in still_first.json()["streams"]}
    assert len(still_first.json()["playout"]["h5live"]) == 2
    # Each organisation still reads its own group with its credentials.
    mine = await get(env, "/api/stream/main-stage/group", org.api_headers, profile="player")
    assert mine.status_code == 200 and len(mine.json()["playout"]["h5live"]) == 2


async def test_player_key_listing(env: Env) -> None:
    mine = await env.org()
    theirs = await env.org()
    a = await create_stream(env, mine, tags=["show", "eu"])
    b = await create_stream(env, mine, tags=["show"])
    locked = await create_stream(env, mine, tags=["show"])
    await set_state(env, locked["id"], "locked", before_lock="created")
    await create_stream(env, theirs, tags=["show"])

    for path in ("/api/stream", "/api/stream/public"):
        listed = await env.client.get(f"{path}?tags[]=show", headers=player(mine))
        assert listed.status_code == 200, listed.text
        assert [s["id"] for s in listed.json()] == [b["id"], a["id"]]  # no locked, no other organisation
        assert all(set(s) == PLAYER_FIELDS for s in listed.json())
        both = await env.client.get(f"{path}?tags[]=show&tags[]=eu", headers=player(mine))
        assert [s["id"] for s in both.json()] == [a["id"]]
        refused = await env.client.get(path, headers=player(mine))
        assert status_code(refused) == (400, "tags_required")
        anonymous = await env.client.get(f"{path}?tags[]=show")
        assert status_code(anonymous) == (401, "unauthenticated")
    # NP4's getStreamsPublic forces "tags[]=" when it has no tags: every playable stream.
    every = await env.client.get("/api/stream/public?tags[]=", headers=player(mine))
    assert [s["id"] for s in every.json()] == [b["id"], a["id"]]
    # Paging: a Link header, the body stays an array.
    first = await env.client.get("/api/stream/public?tags[]=show&quantity=1", headers=player(mine))
    assert [s["id"] for s in first.json()] == [b["id"]]
    rest = await env.client.get(first.links["next"]["url"], headers=player(mine))
    assert [s["id"] for s in rest.json()] == [a["id"]]


async def test_playback_token_required_for_player_reads(env: Env) -> None:
    org = await env.org(packages=ALL_PACKAGES)
    other = await env.org(packages=ALL_PACKAGES)
    stream = await create_stream(env, org, tags=["show"], groupId="stage")
    second = await create_stream(env, org, tags=["show"])
    setting = await env.client.put(
        "/api/organisation/player-access", json={"tokenRequired": True}, headers=org.api_headers
    )
    assert setting.status_code == 200 and setting.json() == {"tokenRequired": True, "securePlayback": True}

    for template in READ_PATHS:
        path = template.format(id=stream["id"])
        for headers in ({}, player(org)):
            refused = await get(env, path, headers)
            assert status_code(refused) == (403, "playback_token_required"), (path, refused.text)
    granted = await playback_token(env, org, streams=[stream["ingest"]["rtmp"]["streamname"]])
    by_group = await playback_token(env, org, groupid="stage")
    org_wide = await playback_token(env, org, orgawide=True)
    foreign = await playback_token(env, other, orgawide=True)
    for template in READ_PATHS:
        path = template.format(id=stream["id"])
        assert (await get(env, path, token=granted)).status_code == 200
        assert (await get(env, path, {"X-Playback-Token": by_group})).status_code == 200
        assert (await get(env, path, player(org), token=org_wide)).status_code == 200
        for bad in (foreign, "not-a-jwt"):
            refused = await get(env, path, token=bad)
            assert status_code(refused) == (403, "playback_token_invalid"), (path, refused.text)
    # A token for one stream does not open another.
    other_stream = await get(env, f"/api/stream/{second['id']}", token=granted)
    assert status_code(other_stream) == (403, "playback_token_invalid")
    # Player-key listings: the streams the token grants.
    listing = "/api/stream?tags[]=show"
    assert status_code(await get(env, listing, player(org))) == (403, "playback_token_required")
    listed = await get(env, listing, player(org), token=granted)
    assert listed.status_code == 200, listed.text
    assert [s["id"] for s in listed.json()] == [stream["id"]]
    everything = await get(env, listing, player(org) | {"X-Playback-Token": org_wide})
    assert [s["id"] for s in everything.json()] == [second["id"], stream["id"]]
    # Credentials need no playback token.
    assert (await get(env, f"/api/stream/{stream['id']}", org.api_headers)).status_code == 200
    # A token for one stream of a group plays that stream, not its siblings.
    sibling = await create_stream(env, org, groupId="stage")
    group_path = f"/api/stream/{stream['id']}/group"
    one = await get(env, group_path, token=granted, profile="player")
    assert [s["id"] for s in one.json()["streams"]] == [stream["id"]], one.text
    whole = await get(env, group_path, token=by_group, profile="player")
    assert [s["id"] for s in whole.json()["streams"]] == [stream["id"], sibling["id"]], whole.text


async def test_player_access_setting(env: Env) -> None:
    plain = await env.org()
    secure = await env.org(packages=["secure_playback"])
    assert (await get(env, "/api/organisation/player-access", plain.api_headers)).json() == {
        "tokenRequired": False,
        "securePlayback": False,
    }
    upgrade = await env.client.put(
        "/api/organisation/player-access", json={"tokenRequired": True}, headers=plain.api_headers
    )
    assert status_code(upgrade) == (403, "upgrade_needed")
    observer = await env.member(secure, "nanoReadOnly")
    operator = await env.member(secure, "nanoUser")
    assert (await get(env, "/api/organisation/player-access", observer.headers)).status_code == 200
    forbidden = await env.client.put(
        "/api/organisation/player-access", json={"tokenRequired": True}, headers=operator.headers
    )
    assert status_code(forbidden) == (403, "forbidden")
    admin = await env.member(secure, "nanoAdmin")
    for value in (True, False):
        response = await env.client.put(
            "/api/organisation/player-access", json={"tokenRequired": value}, headers=admin.headers
        )
        assert response.json()["tokenRequired"] is value
    entries = await audit_entries(env, org=secure, action="organisation.player_access_changed")
    assert [(e.before, e.after) for e in entries] == [
        ({"playerTokenRequired": False}, {"playerTokenRequired": True}),
        ({"playerTokenRequired": True}, {"playerTokenRequired": False}),
    ]


async def test_player_key_is_looked_up_by_its_digest_and_follows_rotation(env: Env) -> None:
    org = await env.org()
    stream = await create_stream(env, org, tags=["t"])
    async with env.runtime.database.session() as session:
        stored = (await session.execute(select(Organisation).where(Organisation.id == org.id))).scalar_one()
        assert stored.player_key_hash == hashlib.sha256(stored.player_key.encode()).hexdigest()
    old = player(org)
    rotated = await env.client.post(
        "/api/organisation/playerkey/rotate", json={"confirm": True}, headers=org.api_headers
    )
    new_key = rotated.json()["playerKey"]
    assert (await get(env, "/api/stream?tags[]=t", old)).status_code == 401
    listed = await get(env, "/api/stream?tags[]=t", {"X-BINTU-PLAYERKEY": new_key})
    assert [s["id"] for s in listed.json()] == [stream["id"]]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Ingest and playout on different hosts, so a leaked ingest address would be seen.
    return {
        "ingest_rtmp_url": "rtmp://ingest.example.com/live",
        "playout_rtmp_url": "rtmp://play.example.com/live",
    }


@pytest.mark.parametrize("vod_public", [False, True])
async def test_recordings_in_playout_web_follow_vod_visibility(env: Env, vod_public: bool) -> None:
    org = await env.org(packages=ALL_PACKAGES)
    stream = await create_stream(env, org)
    await import_vod(env, org, streamId=stream["id"], url="https://cdn.example.com/a.mp4")
    await env.client.put("/api/organisation/vod", json={"public": vod_public}, headers=org.api_headers)

    def vods(body: dict[str, Any]) -> list[str]:
        return [w["url"] for w in body["playout"]["web"] if w["type"] == "vod"]

    full = (await get(env, f"/api/stream/{stream['id']}", org.api_headers)).json()
    assert vods(full) == ["https://cdn.example.com/a.mp4"]
    assert vods((await get(env, f"/api/stream/{stream['id']}", org.api_headers, asset_limit=0)).json()) == []
    anonymous = (await get(env, f"/api/stream/{stream['id']}")).json()
    assert vods(anonymous) == (["https://cdn.example.com/a.mp4"] if vod_public else [])


async def test_push_url_rules(env: Env) -> None:
    use_fake_dns(env)
    org = await env.org()
    stream = await create_stream(env, org)
    path = f"/api/stream/{stream['id']}/push_url"
    for url in (
        "http://hooks.example.com/live",
        "rtmp://user:pass@hooks.example.com/live",
        "rtmp://intranet.example.com/live",
        "rtmps://mixed.example.com/live",
        "rtmp://127.0.0.1/live",
        "rtmp:///live",
    ):
        refused = await env.client.put(path, json={"url": url}, headers=org.api_headers)
        assert status_code(refused) == (400, "push_url_refused"), (url, refused.text)
    saved = await env.client.put(
        path, json={"url": "rtmps://hooks.example.com/app/key1"}, headers=org.api_headers
    )
    assert saved.json()["push_url"] == "rtmps://hooks.example.com/app/key1"
    observer = await env.member(org, "nanoReadOnly")
    seen = (await get(env, f"/api/stream/{stream['id']}", observer.headers)).json()
    assert seen["push_url"] is None  # the target's stream key is for those who may change it
    (entry,) = await audit_entries(env, org=org, action="stream.push_url_changed")
    assert entry.after == {"pushHost": "hooks.example.com"} and "key1" not in str(entry.after)
    cleared = await env.client.put(path, json={"url": None}, headers=org.api_headers)
    assert cleared.json()["push_url"] is None


async def test_overview_shows_and_changes_the_setting(env: Env, sign_in: SignIn) -> None:
    org = await env.org(packages=["secure_playback"])
    admin = await sign_in(await env.member(org, "nanoAdmin", token=False))
    page = await admin.get("/organisation/overview")
    assert "Player access to stream info" in page.text and "Require a playback token" in page.text
    changed = await submit(admin, "/organisation/overview", "/organisation/player-access", {"required": "on"})
    overview = await followed(admin, changed, "/organisation/overview")
    assert flash_of(overview) == ("success", "Players now need a playback token to read stream info.")
    assert (await get(env, "/api/organisation/player-access", org.api_headers)).json()[
        "tokenRequired"
    ] is True
    assert "Stop requiring a token" in overview

    operator = await sign_in(await env.member(org, "nanoUser", token=False))
    shown = (await operator.get("/organisation/overview")).text
    assert "Token required" in shown and 'action="/organisation/player-access"' not in shown
    refused = await submit(
        operator, "/organisation/overview", "/organisation/player-access", {"required": "off"}
    )
    assert refused.status_code == 403
    plain = await env.org()
    other_admin = await sign_in(await env.member(plain, "nanoAdmin", token=False))
    assert "Upgrade needed" in (await other_admin.get("/organisation/overview")).text


async def test_credentials_on_the_read_paths_need_stream_read(env: Env) -> None:
    org = await env.org()
    stream = await create_stream(env, org, tags=["t"])
    role = await env.client.post(
        "/api/permission", json={"name": "billing", "permissions": ["org:read"]}, headers=org.api_headers
    )
    assert role.status_code in (200, 201), role.text
    billing = await env.member(org, "billing")
    observer = await env.member(org, "nanoReadOnly")
    for path in (
        "/api/stream?tags[]=t",
        "/api/stream/public?tags[]=t",
        *[p.format(id=stream["id"]) for p in READ_PATHS],
    ):
        refused = await get(env, path, billing.headers)
        assert status_code(refused) == (403, "forbidden"), (path, refused.text)
        assert (await get(env, path, observer.headers)).status_code == 200, path
    full = (await get(env, f"/api/stream/{stream['id']}", observer.headers)).json()
    assert full["ingest"]["rtmp"]["streamname"] == stream["name"]
