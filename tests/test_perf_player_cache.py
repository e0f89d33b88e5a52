"""The player-read cache (streams/player_cache.py) and what it promises.

* Anonymous and player-key reads of a stream, a stream group and the player-key listing carry a
  strong ETag, ``Cache-Control: public, max-age=1`` and a ``Vary`` on the credential headers, and
  answer 304 to a matching ``If-None-Match``.
* Nothing that depended on credentials is cached; an organisation that requires playback tokens
  gets ``private, no-store`` answers and its token is checked on every request.
* A change through this process (lock, unlock, stop, delete, tags, push URL, player access, player
  key, a row written straight to the database) applies to the very next read; through another
  process (a second app over the same database) within the TTL, never later.
* The cache is bounded, refuses to store a reading a change overtook, and lets one reading serve
  the requests that missed meanwhile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from streamward.api import streams as streams_api
from streamward.app import create_app
from streamward.runtime import Runtime
from streamward.streams import player_cache as cache_module
from streamward.streams.player_cache import CachedAnswer, Fill, PlayerCache, player_cache
from tests.conftest import CreatedOrg, Env
from tests.support.data import ALL_PACKAGES, create_stream, playback_token, set_state, use_fake_dns

PUBLIC = "public, max-age=1"
PRIVATE = "private, no-store"


def with_token(path: str, token: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}token={token}"


def player(org: CreatedOrg) -> dict[str, str]:
    return {"X-BINTU-PLAYERKEY": org.organisation.player_key}


class Clock:
    """Stands in for the cache's monotonic clock: tests step past the TTL instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(cache_module, "clock", fake)
    return fake


@pytest.fixture
async def other(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    """A second Streamward over the same database: another process, as far as caches go."""
    runtime = Runtime.from_settings(env.settings)
    transport = httpx.ASGITransport(app=create_app(env.settings, runtime=runtime), client=("203.0.113.11", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await runtime.aclose()


async def _reads(env: Env, org: CreatedOrg) -> dict[str, tuple[str, dict[str, str]]]:
    stream = await create_stream(env, org, tags=["show"], groupId="stage")
    await create_stream(env, org, tags=["show"], groupId="stage")
    return {
        "stream": (f"/api/stream/{stream['id']}?profile=player", {}),
        "stream, player key": (f"/api/stream/{stream['id']}", player(org)),
        "group": (f"/api/stream/{stream['id']}/group?profile=player", {}),
        "group by id, player key": ("/api/stream/stage/group", player(org)),
        "listing": ("/api/stream?tags[]=show", player(org)),
        "public listing": ("/api/stream/public?tags[]=show", player(org)),
    }


async def test_public_reads_carry_a_strong_etag_and_answer_304(env: Env) -> None:
    org = await env.org()
    for what, (path, headers) in (await _reads(env, org)).items():
        first = await env.client.get(path, headers=headers)
        assert first.status_code == 200, (what, first.text)
        etag = first.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"') and len(etag) > 8, what
        assert first.headers["cache-control"] == PUBLIC, what
        vary = {name.strip().lower() for name in first.headers["vary"].split(",")}
        assert {"x-bintu-token", "x-bintu-apikey", "x-bintu-playerkey"} <= vary, what

        again = await env.client.get(path, headers=headers)
        assert (again.content, again.headers["etag"]) == (first.content, etag), what
        for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            unchanged = await env.client.get(path, headers=headers | {"If-None-Match": if_none_match})
            assert unchanged.status_code == 304 and unchanged.content == b"", (what, if_none_match)
            assert unchanged.headers["etag"] == etag and unchanged.headers["cache-control"] == PUBLIC
        changed = await env.client.get(path, headers=headers | {"If-None-Match": '"not-it"'})
        assert changed.status_code == 200 and changed.content == first.content, what


async def test_the_first_reader_may_revalidate_too(env: Env) -> None:
    org = await env.org()
    stream = await create_stream(env, org)
    path = f"/api/stream/{stream['id']}"
    etag = (await env.client.get(path)).headers["etag"]
    player_cache(env.runtime.database).invalidate([org.id])  # the next read is a reading again
    assert (await env.client.get(path, headers={"If-None-Match": etag})).status_code == 304


async def test_the_same_answer_has_the_same_etag_in_every_process(env: Env, other: httpx.AsyncClient) -> None:
    org = await env.org()
    stream = await create_stream(env, org, groupId="stage")
    for path in (f"/api/stream/{stream['id']}", f"/api/stream/{stream['id']}/group"):
        here, there = await env.client.get(path), await other.get(path)
        assert here.headers["etag"] == there.headers["etag"], path
        revalidated = await other.get(path, headers={"If-None-Match": here.headers["etag"]})
        assert revalidated.status_code == 304, path


async def test_nothing_that_depended_on_credentials_is_cached(env: Env) -> None:
    org = await env.org()
    theirs = await env.org()
    stream = await create_stream(env, org, tags=["show"])
    path = f"/api/stream/{stream['id']}"
    anonymous = await env.client.get(path)  # now cached for players
    assert "ingest" not in anonymous.json()
    for params in ({}, {"profile": "player"}):
        credentialed = await env.client.get(path, params=params, headers=org.api_headers)
        assert credentialed.status_code == 200
        assert "etag" not in credentialed.headers and credentialed.headers["cache-control"] == "no-store"
    assert "ingest" in (await env.client.get(path, headers=org.api_headers)).json()
    listing = await env.client.get("/api/stream?tags[]=show", headers=org.api_headers)
    assert "etag" not in listing.headers and "ingest" in listing.json()[0]
    # Sent credentials are checked even when the players' answer is at hand.
    for headers in (
        {"X-BINTU-TOKEN": "swt_nope"},
        {"X-BINTU-APIKEY": "swk_nope"},
        {"X-BINTU-PLAYERKEY": "x"},
    ):
        assert (await env.client.get(path, headers=headers)).status_code == 401, headers
    assert (await env.client.get(path, headers=player(theirs))).status_code == 404
    assert (await env.client.get("/api/stream?tags[]=show")).status_code == 401  # a listing needs the key


async def test_changes_through_this_process_apply_to_the_very_next_read(env: Env) -> None:
    use_fake_dns(env)
    org = await env.org()
    stream = await create_stream(env, org, tags=["show"], groupId="stage")
    sibling = await create_stream(env, org, tags=["show"], groupId="stage")
    path, group = f"/api/stream/{stream['id']}", f"/api/stream/{stream['id']}/group"
    listing = "/api/stream?tags[]=show"

    async def seen() -> tuple[int, int, list[str]]:
        read = await env.client.get(path)
        members = (await env.client.get(group)).json()["streams"]
        listed = (await env.client.get(listing, headers=player(org))).json()
        return read.status_code, len(members), [s["id"] for s in listed]

    assert await seen() == (200, 2, [sibling["id"], stream["id"]])
    manage = f"/api/stream/{sibling['id']}"
    assert (await env.client.put(f"{manage}/lock", headers=org.api_headers)).status_code == 200
    assert await seen() == (200, 1, [stream["id"]])
    assert (await env.client.put(f"{manage}/unlock", headers=org.api_headers)).status_code == 200
    assert await seen() == (200, 2, [sibling["id"], stream["id"]])
    retag = await env.client.put(f"{manage}/tag", json={"tags": ["other"]}, headers=org.api_headers)
    assert retag.status_code == 200
    assert await seen() == (200, 2, [stream["id"]])
    renamed = await env.client.put("/api/tag/show", json={"name": "gala"}, headers=org.api_headers)
    assert renamed.status_code == 200
    assert await seen() == (200, 2, [])
    # Going live is the media server's report; here it is written straight to the database.
    await set_state(env, stream["id"], "live")
    assert (await env.client.get(path)).json()["state"] == "live"
    assert (await env.client.put(f"{path}/stop", headers=org.api_headers)).status_code == 200
    assert (await env.client.get(path)).json()["state"] == "ended"
    await env.client.get(path)
    pushed = await env.client.put(
        f"{path}/push_url", json={"url": "rtmp://hooks.example.com/live/key"}, headers=org.api_headers
    )
    assert pushed.status_code == 200
    assert len(player_cache(env.runtime.database)) == 0  # its answers were dropped with the change
    assert (await env.client.delete(path, headers=org.api_headers)).status_code == 200
    assert (await env.client.get(path)).status_code == 404


async def test_organisation_settings_apply_to_the_very_next_read(env: Env) -> None:
    org = await env.org(packages=ALL_PACKAGES)
    stream = await create_stream(env, org, tags=["show"])
    path, listing = f"/api/stream/{stream['id']}", "/api/stream?tags[]=show"
    assert (await env.client.get(path)).status_code == 200
    assert (await env.client.get(listing, headers=player(org))).status_code == 200
    rotated = await env.client.post(
        "/api/organisation/playerkey/rotate", json={"confirm": True}, headers=org.api_headers
    )
    assert rotated.status_code == 200
    assert (await env.client.get(listing, headers=player(org))).status_code == 401  # the old key
    new_key = {"X-BINTU-PLAYERKEY": rotated.json()["playerKey"]}
    assert (await env.client.get(listing, headers=new_key)).status_code == 200
    required = await env.client.put(
        "/api/organisation/player-access", json={"tokenRequired": True}, headers=org.api_headers
    )
    assert required.status_code == 200
    refused = await env.client.get(path)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "playback_token_required"
    assert (await env.client.get(listing, headers=new_key)).status_code == 403


async def test_token_required_answers_are_private_and_the_token_is_checked_every_time(env: Env) -> None:
    org = await env.org(packages=ALL_PACKAGES)
    stream = await create_stream(env, org, tags=["show"], groupId="stage")
    other_stream = await create_stream(env, org, tags=["show"])
    required = await env.client.put(
        "/api/organisation/player-access", json={"tokenRequired": True}, headers=org.api_headers
    )
    assert required.status_code == 200
    name = stream["ingest"]["rtmp"]["streamname"]
    token = await playback_token(env, org, streams=[name], revocable=True)
    reads = [
        (f"/api/stream/{stream['id']}", {}),
        (f"/api/stream/{stream['id']}/group", {}),
        ("/api/stream?tags[]=show", player(org)),
    ]
    for path, headers in reads:
        for _ in range(2):
            granted = await env.client.get(with_token(path, token), headers=headers)
            assert granted.status_code == 200, (path, granted.text)
            assert granted.headers["cache-control"] == PRIVATE and "etag" not in granted.headers, path
        assert (await env.client.get(path, headers=headers)).status_code == 403, path
        if_none_match = {"If-None-Match": "*"}
        not_shared = await env.client.get(path, headers=headers | if_none_match)
        assert not_shared.status_code == 403, path
    # At most a note that these reads are the reader's own: no body, nothing served from it.
    held = player_cache(env.runtime.database).answers()
    assert held and all(not answer.public and answer.body == b"" for answer in held)
    other_read = await env.client.get(with_token(f"/api/stream/{other_stream['id']}", token))
    assert other_read.status_code == 403
    revoked = await env.client.post("/api/v1/splay/revoke", json={"token": token}, headers=org.api_headers)
    assert revoked.status_code == 204
    for path, headers in reads:
        refused = await env.client.get(with_token(path, token), headers=headers)
        assert refused.status_code == 403, path
        assert refused.json()["error"]["details"]["reason"] == "token_revoked", path


async def test_other_processes_stop_serving_a_locked_or_deleted_stream_within_the_ttl(
    env: Env, other: httpx.AsyncClient, clock: Clock
) -> None:
    org = await env.org()
    stream = await create_stream(env, org, tags=["show"], groupId="stage")
    locked_later = await create_stream(env, org, tags=["show"])
    reads = {
        "stream": (f"/api/stream/{locked_later['id']}", {}),
        "group": (f"/api/stream/{stream['id']}/group", {}),
        "listing": ("/api/stream?tags[]=show", player(org)),
    }

    async def through_b() -> dict[str, Any]:
        answers: dict[str, Any] = {}
        for what, (path, headers) in reads.items():
            response = await other.get(path, headers=headers)
            answers[what] = response.json() if response.status_code == 200 else response.status_code
        return answers

    before = await through_b()  # B caches them
    assert (
        await env.client.put(f"/api/stream/{locked_later['id']}/lock", headers=org.api_headers)
    ).is_success
    assert (await env.client.delete(f"/api/stream/{stream['id']}", headers=org.api_headers)).is_success
    clock.now += 0.5
    assert await through_b() == before  # still inside B's second: served as it was read
    clock.now += 0.5  # a full TTL after B's reading began
    after = await through_b()
    assert after["stream"] == 404 and after["group"] == 404
    assert [s["id"] for s in after["listing"]] == []


async def test_an_audience_arriving_while_the_database_is_slow_costs_two_readings_not_one_each(
    env: Env, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every reading takes longer than the TTL (an overloaded database), so none can be kept: the
    players that arrived during the first reading share a second one instead of each reading."""
    org = await env.org()
    stream = await create_stream(env, org)
    audience = 8
    arrived = asyncio.Event()
    entered = 0
    readings = 0
    lead_or_wait = PlayerCache.lead_or_wait
    find_for_player = streams_api.service.find_for_player

    async def counted_lead_or_wait(self: PlayerCache, key: Any) -> Any:
        nonlocal entered
        entered += 1
        if entered > 1:
            clock.now += 0.01  # the others arrive after the first reading began
        if entered == audience:
            arrived.set()
        return await lead_or_wait(self, key)

    async def slow_find_for_player(*args: Any, **kwargs: Any) -> Any:
        nonlocal readings
        readings += 1
        if readings == 1:
            await asyncio.wait_for(arrived.wait(), timeout=10)  # the audience arrives meanwhile
        clock.now += 1.0  # each reading takes the whole TTL
        return await find_for_player(*args, **kwargs)

    monkeypatch.setattr(PlayerCache, "lead_or_wait", counted_lead_or_wait)
    monkeypatch.setattr(streams_api.service, "find_for_player", slow_find_for_player)
    path = f"/api/stream/{stream['id']}?profile=player"
    answers = await asyncio.gather(*(env.client.get(path) for _ in range(audience)))
    assert [answer.status_code for answer in answers] == [200] * audience
    assert len({answer.content for answer in answers}) == 1
    assert readings == 2


async def test_a_reading_overtaken_by_a_change_is_not_stored() -> None:
    cache = PlayerCache()
    organisation = uuid.uuid4()
    fill = cache.begin("key")
    cache.invalidate([organisation])  # a change committed while the reading ran
    answer, stored = cache.put(fill, organisation, b"[]")
    assert not stored and cache.get("key") is None
    assert answer.body == b"[]"  # still the answer to this request
    fresh = cache.begin("key")
    assert cache.put(fresh, organisation, b"[]")[1] and cache.get("key") is not None
    cache.invalidate([uuid.uuid4()])  # another organisation's change leaves it be
    assert cache.get("key") is not None


async def test_an_answer_lives_one_ttl_from_the_start_of_its_reading(clock: Clock) -> None:
    cache = PlayerCache()
    fill = cache.begin("key")
    clock.now += 0.4  # the reading took this long
    cache.put(fill, uuid.uuid4(), b"{}")
    clock.now += 0.59
    assert cache.get("key") is not None
    clock.now += 0.01
    assert cache.get("key") is None
    slow = cache.begin("slow")
    clock.now += 1.0
    assert cache.put(slow, uuid.uuid4(), b"{}")[1] is False  # already a second old


async def test_the_cache_is_bounded_by_entries_and_bytes() -> None:
    cache = PlayerCache(max_entries=3, max_bytes=100)
    organisation = uuid.uuid4()
    for index in range(5):
        cache.put(cache.begin(index), organisation, b"x" * 10)
    assert len(cache) == 3 and [cache.get(i) is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    cache.get(2)  # the most recently used is kept longest
    cache.put(cache.begin("big"), organisation, b"y" * 80)
    assert cache.size_in_bytes <= 100 and cache.get(2) is not None and cache.get(3) is None
    assert cache.put(cache.begin("huge"), organisation, b"z" * 101)[1] is False
    cache.invalidate([organisation])
    assert len(cache) == 0 and cache.size_in_bytes == 0


async def test_requests_that_miss_together_share_one_reading() -> None:
    cache = PlayerCache()
    organisation = uuid.uuid4()
    answer, leader = await cache.lead_or_wait("key")
    assert answer is None and leader is not None
    waiting = [asyncio.create_task(cache.lead_or_wait("key")) for _ in range(3)]
    await asyncio.sleep(0)
    waiting[0].cancel()  # one client leaves: the others keep waiting
    cache.put(leader, organisation, b"{}")
    results = await asyncio.gather(*waiting[1:])
    assert all(answer is not None and fill is None for answer, fill in results)

    # A reading that ends without a storable answer (a refusal, a token-checked answer): whoever
    # waited reads for itself.
    cache.invalidate([organisation])
    _, leader = await cache.lead_or_wait("key")
    assert leader is not None
    follower = asyncio.create_task(cache.lead_or_wait("key"))
    await asyncio.sleep(0)
    cache.finish(leader)
    answer, own = await follower
    assert answer is None and own is not None


async def _settle() -> None:
    for _ in range(5):  # a finished reading wakes its waiters, who may start the next one
        await asyncio.sleep(0)


async def _slow_reading_with_waiters(
    cache: PlayerCache, clock: Clock, waiters: int
) -> tuple[Fill, list[asyncio.Task[tuple[CachedAnswer | None, Fill | None]]]]:
    """A reading that ``waiters`` requests arrive during, and that has taken longer than the TTL."""
    _, reading = await cache.lead_or_wait("key")
    assert reading is not None
    clock.now += 0.1  # the others arrive while it runs
    waiting = [asyncio.create_task(cache.lead_or_wait("key")) for _ in range(waiters)]
    await _settle()
    clock.now += 1.4
    return reading, waiting


async def test_readings_slower_than_the_ttl_are_shared_not_repeated_by_every_waiter(clock: Clock) -> None:
    """An overloaded database: each reading takes longer than the TTL, so none can be kept. The
    requests that waited for one (they arrived after it began, its answer is too old for them) do
    not each read for themselves: one reads again, the others wait for that reading, which began
    after all of them arrived and so answers them although it cannot be kept either."""
    cache = PlayerCache()
    organisation = uuid.uuid4()
    first, waiting = await _slow_reading_with_waiters(cache, clock, 5)
    assert cache.put(first, organisation, b'{"reading": 1}')[1] is False
    await _settle()
    leading = [task for task in waiting if task.done()]
    assert len(leading) == 1  # one reading at a time, not five
    answer, second = leading[0].result()
    assert answer is None and second is not None and second.started == clock.now
    clock.now += 0.1
    late = asyncio.create_task(cache.lead_or_wait("key"))  # arrives while the second reading runs
    await _settle()
    clock.now += 1.4
    assert cache.put(second, organisation, b'{"reading": 2}')[1] is False
    answers = await asyncio.gather(*(task for task in waiting if task is not leading[0]))
    shared = [(answer.body if answer else None, fill) for answer, fill in answers]
    assert shared == [(b'{"reading": 2}', None)] * 4
    answer, third = await late  # arrived after the second reading began: it leads the third
    assert answer is None and third is not None
    cache.put(third, organisation, b'{"reading": 3}')  # a quick one: kept, and served from now on
    found = cache.get("key")
    assert found is not None and found.body == b'{"reading": 3}'


async def test_a_reading_overtaken_by_a_change_does_not_answer_who_waited_for_it() -> None:
    cache = PlayerCache()
    organisation = uuid.uuid4()
    _, first = await cache.lead_or_wait("key")
    assert first is not None
    follower = asyncio.create_task(cache.lead_or_wait("key"))
    await _settle()
    cache.invalidate([organisation])  # the stream was locked while it was read
    assert cache.put(first, organisation, b'{"state": "live"}')[1] is False
    answer, own = await follower
    assert answer is None and own is not None  # it reads again, after the change


async def test_waiters_on_a_token_checked_reading_too_slow_to_keep_read_for_themselves_at_once(
    clock: Clock,
) -> None:
    cache = PlayerCache()
    leader, waiting = await _slow_reading_with_waiters(cache, clock, 3)
    assert cache.put(leader, uuid.uuid4(), b"", public=False)[1] is False
    await _settle()
    assert all(task.done() for task in waiting)  # none waits for another reading
    for answer, fill in (task.result() for task in waiting):
        assert answer is not None and not answer.public and fill is None


async def test_readers_of_a_token_checked_answer_do_not_queue_behind_each_other() -> None:
    cache = PlayerCache()
    organisation = uuid.uuid4()
    answer, leader = await cache.lead_or_wait("key")
    assert leader is not None
    _, stored = cache.put(leader, organisation, b'{"secret": 1}', public=False)
    note = cache.get("key")
    assert stored and note is not None and not note.public and note.body == b""
    answer, fill = await cache.lead_or_wait("other")  # another key still leads as usual
    assert answer is None and fill is not None
