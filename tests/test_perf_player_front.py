"""The player-read front (api/player_front.py): a cached public player read is answered before
FastAPI's machinery, with exactly the answer the route gives, and everything outside it still applies
(request id, CORS, security headers, the access log's route template). What it cannot tell is a
public player read goes on to the route."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from streamward.api import streams as stream_routes
from streamward.streams import player_cache
from streamward.streams.player_cache import PlayerCache
from tests.conftest import CreatedOrg, Env
from tests.support.data import ALL_PACKAGES, create_stream, playback_token

# Headers that differ between any two answers, whoever gives them.
_PER_REQUEST = {"x-request-id", "date"}


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The player reads that reached the route (its handler calls cached_or_read first)."""
    seen: list[str] = []
    original = stream_routes.cached_or_read

    async def counting(kind: str, request: Any, read: Any) -> Any:
        seen.append(request.url.path)
        return await original(kind, request, read)

    monkeypatch.setattr(stream_routes, "cached_or_read", counting)
    return seen


async def _reads(env: Env, org: CreatedOrg) -> dict[str, tuple[str, dict[str, str]]]:
    stream = await create_stream(env, org, tags=["show"], groupId="stage")
    player_key = {"X-BINTU-PLAYERKEY": org.organisation.player_key}
    return {
        "stream": (f"/api/stream/{stream['id']}?profile=player", {}),
        "group": (f"/api/stream/{stream['id']}/group", {}),
        "listing": ("/api/stream?tags[]=show", player_key),
        "public listing": ("/api/stream/public?tags[]=show", player_key),
    }


def _comparable(headers: Any) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in _PER_REQUEST}


async def test_a_cached_read_is_answered_in_front_with_the_routes_answer(env: Env, routed: list[str]) -> None:
    org = await env.org()
    origin = {"Origin": "https://player.example"}
    for what, (path, headers) in (await _reads(env, org)).items():
        routed.clear()
        first = await env.client.get(path, headers=headers | origin)  # the route reads and fills the cache
        assert first.status_code == 200, (what, first.text)
        again = await env.client.get(path, headers=headers | origin)
        unchanged = await env.client.get(
            path, headers=headers | origin | {"If-None-Match": first.headers["etag"]}
        )
        assert len(routed) == 1, (what, routed)  # the two later ones never reached the route
        assert (again.status_code, again.content) == (200, first.content), what
        assert _comparable(again.headers) == _comparable(first.headers), what
        assert unchanged.status_code == 304 and unchanged.content == b"", what
        # What the layers outside add is on the front's answers too.
        for answer in (again, unchanged):
            assert answer.headers["access-control-allow-origin"], what
            assert answer.headers["x-content-type-options"] == "nosniff", what
            assert answer.headers["content-security-policy"], what
            assert answer.headers["x-request-id"] != first.headers["x-request-id"], what


async def test_what_the_front_cannot_share_goes_to_the_route(env: Env, routed: list[str]) -> None:
    org = await env.org()
    stream = await create_stream(env, org)
    path = f"/api/stream/{stream['id']}"
    await env.client.get(path)  # cached for players
    routed.clear()
    assert (await env.client.get(path, headers=org.api_headers)).status_code == 200  # credentials
    assert (await env.client.get("/api/stream")).status_code == 401  # a listing without the player key
    assert (await env.client.get(f"{path}?other=1")).status_code == 200  # another query: not cached yet
    assert len(routed) == 3, routed


async def test_front_answers_are_logged_under_their_route(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    org = await env.org()
    stream = await create_stream(env, org)
    path = f"/api/stream/{stream['id']}"
    await env.client.get(path)
    with caplog.at_level(logging.INFO, logger="streamward.access"):
        assert (await env.client.get(path)).status_code == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "streamward.access"]
    assert lines and "/api/stream/{stream_id} 200" in lines[-1], lines


async def test_readers_of_a_token_required_organisation_never_wait_for_one_another(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their answers are each reader's own: once the cache notes that, a reader goes straight to the
    route instead of queueing behind another reader's reading."""
    # The cache's time stands still: a first reading slowed past the TTL by a loaded machine (1.8 s
    # once in the full suite) would not be kept, and its note would be missing for a reason that is
    # not this test's.
    monkeypatch.setattr(player_cache, "clock", lambda: 1000.0)
    org = await env.org(packages=ALL_PACKAGES)
    stream = await create_stream(env, org)
    required = await env.client.put(
        "/api/organisation/player-access", json={"tokenRequired": True}, headers=org.api_headers
    )
    assert required.status_code == 200
    token = await playback_token(env, org, streams=[stream["ingest"]["rtmp"]["streamname"]])
    path = f"/api/stream/{stream['id']}?token={token}"
    assert (await env.client.get(path)).status_code == 200  # the cache now notes: not shared
    waited: list[object] = []
    original = PlayerCache.lead_or_wait

    async def lead_or_wait(self: PlayerCache, key: object) -> Any:
        waited.append(key)
        return await original(self, key)

    monkeypatch.setattr(PlayerCache, "lead_or_wait", lead_or_wait)
    answers = await asyncio.gather(*(env.client.get(path) for _ in range(5)))
    assert [answer.status_code for answer in answers] == [200] * 5
    assert all(answer.headers["cache-control"] == "private, no-store" for answer in answers)
    assert waited == []
