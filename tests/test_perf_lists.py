"""The lists build their JSON straight from rows (#12), and the stream list keeps what it built of
each row: what they answer must stay exactly what their response models describe, what the single
read shows and what the reader may see, a page must cost the same number of statements whatever
its rows hold, and a changed row is never answered from what was kept of the old one."""

from __future__ import annotations

import uuid

import pytest

from streamward.streams.models import Stream
from streamward.users.schemas import UserPage
from tests.conftest import Env
from tests.support.data import ALL_PACKAGES, create_stream, import_vod, use_fake_dns
from tests.support.mfa import Clock, enrol_app


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


async def test_the_users_list_answers_what_its_model_would(env: Env, clock: Clock) -> None:
    org = await env.org()
    with_app = await env.member(org, "nanoReadOnly")
    await enrol_app(env, with_app, clock)
    for _ in range(2):
        await env.member(org, "nanoUser")
    response = await env.client.get("/api/user?limit=2", headers=org.api_headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    # Validated by the model, then serialised by it: the same document, key for key.
    assert UserPage.model_validate(answer).model_dump(mode="json", by_alias=True) == answer
    assert answer["nextCursor"] is not None
    rest = await env.client.get(f"/api/user?cursor={answer['nextCursor']}", headers=org.api_headers)
    assert rest.status_code == 200, rest.text
    items = answer["items"] + rest.json()["items"]
    flags = {item["email"]: item["mfa"] for item in items}
    assert len(flags) == len(items)  # no member twice
    assert flags[with_app.email] == {"totp": True, "passkey": False}
    assert [mfa for email, mfa in flags.items() if email != with_app.email] == [
        {"totp": False, "passkey": False}
    ] * (len(items) - 1)


async def test_a_users_page_is_one_statement(
    env: Env, statements: list[str], opened_sessions: list[bool]
) -> None:
    """The page and its rows' second-factor flags come in one statement, whatever the filters; on
    PostgreSQL it runs on the look-up pool, beside the credential's, and no session is opened."""
    org = await env.org()
    for n in range(3):
        await env.member(org, "nanoUser", email=f"listed{n}@example.com")
    first = (await env.client.get("/api/user?limit=2", headers=org.api_headers)).json()
    for query in ("", "?limit=2", f"?limit=2&cursor={first['nextCursor']}", "?role=nanoUser&q=LISTED"):
        statements.clear()
        opened_sessions.clear()
        response = await env.client.get(f"/api/user{query}", headers=org.api_headers)
        assert response.status_code == 200, response.text
        listing = [s for s in statements if "membership" in s.lower() and "ORDER BY" in s]
        assert len(listing) == 1, statements
        assert not any("totp_factor" in s.lower() for s in statements if s not in listing)
        assert opened_sessions == ([] if env.engine_name == "postgres" else [False])
    assert [item["email"] for item in response.json()["items"]] == [
        f"listed{n}@example.com" for n in (2, 1, 0)
    ]


async def test_a_listed_stream_changed_in_place_is_listed_as_it_is_now(env: Env) -> None:
    """The stream list keeps each stream's JSON by the row it was built from: a change that leaves
    ``updated_at`` alone (here straight in the database) is still a new row, never the kept JSON."""
    org = await env.org(packages=ALL_PACKAGES)
    created = await create_stream(env, org, transcodes=[{"profile": "vtrans2-852x480x800x25"}])
    first = (await env.client.get("/api/stream", headers=org.api_headers)).json()
    assert [len(s["playout"]["h5live"]) for s in first] == [2]
    async with env.runtime.database.session() as session:
        stream = await session.get(Stream, uuid.UUID(created["id"]))
        assert stream is not None
        stream.transcodes = []
        stream.group_id = "moved"
        await session.commit()
    again = (await env.client.get("/api/stream", headers=org.api_headers)).json()
    assert [(len(s["playout"]["h5live"]), s["streamgroup"]) for s in again] == [(1, "moved")]
    assert again[0]["updated_at"] == first[0]["updated_at"]
    # The single read (built anew every time) and the listing agree.
    single = (await env.client.get(f"/api/stream/{created['id']}", headers=org.api_headers)).json()
    assert again == [single]


async def test_a_listing_shows_each_streams_recordings_as_they_are_now(env: Env) -> None:
    """A listed stream with recordings is built with them each time; one without is the kept view,
    whose JSON is kept by its row: neither lends the other what it shows."""
    org = await env.org(packages=ALL_PACKAGES)
    first = await create_stream(env, org)
    second = await create_stream(env, org)
    await import_vod(env, org, streamId=first["id"], url="https://cdn.example.com/first.mp4")

    async def recordings() -> dict[str, list[str]]:
        listed = await env.client.get("/api/stream", headers=org.api_headers)
        assert listed.status_code == 200, listed.text
        return {s["id"]: [w["url"] for w in s["playout"]["web"] if w["type"] == "vod"] for s in listed.json()}

    expected = {first["id"]: ["https://cdn.example.com/first.mp4"], second["id"]: []}
    assert await recordings() == expected
    assert await recordings() == expected  # the kept view of the second, again
    await import_vod(env, org, streamId=second["id"], url="https://cdn.example.com/second.mp4")
    assert await recordings() == expected | {second["id"]: ["https://cdn.example.com/second.mp4"]}


async def test_a_kept_listing_never_shows_one_reader_what_another_may_see(env: Env) -> None:
    """The push URL is shown to those who may change it: listed first for the API key, the same
    stream listed for a read-only member carries none; and players get the player profile."""
    use_fake_dns(env)
    org = await env.org(packages=ALL_PACKAGES)
    created = await create_stream(env, org, tags=["stage"])
    pushed = await env.client.put(
        f"/api/stream/{created['id']}/push_url",
        json={"url": "rtmp://hooks.example.com/live/key"},
        headers=org.api_headers,
    )
    assert pushed.status_code == 200, pushed.text
    manager = (await env.client.get("/api/stream", headers=org.api_headers)).json()
    assert manager[0]["push_url"] == "rtmp://hooks.example.com/live/key"
    reader = await env.member(org, "nanoReadOnly")
    shown = (await env.client.get("/api/stream", headers=reader.headers)).json()
    assert shown[0]["push_url"] is None
    assert {k: v for k, v in shown[0].items() if k != "push_url"} == {
        k: v for k, v in manager[0].items() if k != "push_url"
    }
    player_key = (await env.client.get("/api/organisation/playerkey", headers=org.api_headers)).json()
    as_player = await env.client.get(
        "/api/stream?tags[]=stage", headers={"X-BINTU-PLAYERKEY": player_key["playerKey"]}
    )
    assert as_player.status_code == 200, as_player.text
    assert set(as_player.json()[0]) == {"id", "state", "playout", "streamgroup"}
    profiled = (await env.client.get("/api/stream?profile=player", headers=org.api_headers)).json()
    assert profiled == as_player.json()


async def test_a_stream_page_is_one_statement_with_its_tags(
    env: Env, statements: list[str], opened_sessions: list[bool]
) -> None:
    """The page and every row's tags come in one statement, whatever the filters (tags, state,
    group, cursor, the player key's listing); on PostgreSQL it runs on the look-up pool and no session
    is opened. Each row's tags are its own, sorted. (Recordings, for organisations with VOD, are read
    in a statement of their own.)"""
    org = await env.org()
    other = await env.org()
    await create_stream(env, other, tags=["stage", "zebra"])  # another organisation's: never listed
    await create_stream(env, org, tags=["stage"], groupId="g1")
    await create_stream(env, org, tags=["zebra", "stage", "alpha"], groupId="g1")
    await create_stream(env, org)
    player_key = (await env.client.get("/api/organisation/playerkey", headers=org.api_headers)).json()
    first = await env.client.get("/api/stream?quantity=1", headers=org.api_headers)
    cursor = first.headers["link"].split("cursor=")[1].split(">")[0]
    player = {"X-BINTU-PLAYERKEY": player_key["playerKey"]}
    for query, headers, count in [
        ("", org.api_headers, 3),
        ("?tags[]=stage&tags[]=zebra", org.api_headers, 1),
        ("?state=created&groupId=g1", org.api_headers, 2),
        (f"?quantity=1&cursor={cursor}", org.api_headers, 1),
        ("?tags[]=stage", player, 2),
    ]:
        statements.clear()
        opened_sessions.clear()
        response = await env.client.get(f"/api/stream{query}", headers=headers)
        assert response.status_code == 200, (query, response.text)
        assert len(response.json()) == count, query
        listing = [s for s in statements if "ORDER BY" in s]
        assert len(listing) == 1 and "FROM stream" in listing[0], (query, statements)
        assert not any("stream_tag" in s for s in statements if s not in listing), (query, statements)
        assert opened_sessions == ([] if env.engine_name == "postgres" else [False]), query
    listed = (await env.client.get("/api/stream", headers=org.api_headers)).json()
    assert [s["tags"] for s in listed] == [[], ["alpha", "stage", "zebra"], ["stage"]]
    # Tags in the order a single read gives them (the database's collation), whatever they hold.
    mixed = await create_stream(env, org, tags=["Zed", "alpha", "_under", "étage", "Beta", "10", "9"])
    single = (await env.client.get(f"/api/stream/{mixed['id']}", headers=org.api_headers)).json()
    listed = (await env.client.get("/api/stream?quantity=1", headers=org.api_headers)).json()
    assert listed[0]["tags"] == single["tags"] and len(single["tags"]) == 7
