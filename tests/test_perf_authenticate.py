"""Authentication's cost (web.authenticate): one round trip to the database per request, however many
of the route's rules ask who is calling, and no session opened for it on a reading route where a
look-up pool exists."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from streamward.app import create_app
from streamward.db import release
from streamward.web import authenticate as authentication
from streamward.web.session import reads
from tests.conftest import Env
from tests.support.data import create_stream, playback_token


async def test_an_authenticated_read_is_one_round_trip(env: Env, statements: list[str]) -> None:
    org = await env.org()
    admin = await env.member(org)
    for headers in (org.api_headers, admin.headers):
        assert (await env.client.get("/api/organisation", headers=headers)).status_code == 200  # warm
        statements.clear()
        assert (await env.client.get("/api/organisation", headers=headers)).status_code == 200
        assert len(statements) == 1, statements


async def test_a_reading_route_opens_no_session_for_its_credential_on_postgresql(
    env: Env, opened_sessions: list[bool]
) -> None:
    if env.engine_name != "postgres":
        pytest.skip("SQLite has no look-up pool: the look-up runs in the request's session")
    org = await env.org()
    admin = await env.member(org)
    opened_sessions.clear()
    assert (await env.client.get("/api/organisation", headers=admin.headers)).status_code == 200
    assert opened_sessions == []


async def test_a_playback_token_check_is_one_round_trip_and_opens_no_session_on_postgresql(
    env: Env, statements: list[str], opened_sessions: list[bool]
) -> None:
    """Every player start checks a token: one statement (revocation state and the stream), and on
    PostgreSQL on the look-up pool, without a session (web.session.lookup_source)."""
    org = await env.org(packages=["secure_playback"])
    stream = await create_stream(env, org)
    token = await playback_token(env, org, streams=[stream["name"]], revocable=True)
    body = {"token": token, "stream": stream["name"]}
    assert (await env.client.post("/api/v1/splay/verify", json=body)).status_code == 200  # key now known
    opened_sessions.clear()
    statements.clear()
    assert (await env.client.post("/api/v1/splay/verify", json=body)).status_code == 200
    assert len(statements) == 1, statements
    assert opened_sessions == ([] if env.engine_name == "postgres" else [False])


async def test_a_second_rule_in_one_request_does_not_look_the_credential_up_again(
    env: Env, statements: list[str]
) -> None:
    org = await env.org()
    admin = await env.member(org)
    app = create_app(env.settings, runtime=env.runtime)
    token = admin.headers["X-BINTU-TOKEN"]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/organisation",
        "headers": [(b"x-bintu-token", token.encode())],
        "query_string": b"",
        "client": ("203.0.113.10", 50000),
        "app": app,
        "endpoint": _a_reading_route,
        "streamward.session_managed": True,
    }
    request = Request(scope)
    statements.clear()
    try:
        first = await authentication.authenticate(request)
        looked_up = len(statements)
        assert looked_up == 1, statements
        assert await authentication.authenticate_for_enrolment(request) is first
        assert len(statements) == looked_up
    finally:
        session = scope.pop("streamward.session", None)
        if session is not None:
            await release(session)


@reads
async def _a_reading_route() -> None: ...


async def test_the_organisation_read_answers_a_change_at_once(env: Env) -> None:
    """The read's JSON is kept by every value it shows: a change is another answer on the very next
    read, and two organisations never share one."""
    org = await env.org()
    other = await env.org()
    before = (await env.client.get("/api/organisation", headers=org.api_headers)).json()
    assert before["vodPublic"] is False
    changed = await env.client.put("/api/organisation/vod", json={"public": True}, headers=org.api_headers)
    assert changed.status_code == 200, changed.text
    after = (await env.client.get("/api/organisation", headers=org.api_headers)).json()
    assert after == {**before, "vodPublic": True}
    theirs = (await env.client.get("/api/organisation", headers=other.api_headers)).json()
    assert (theirs["id"], theirs["name"], theirs["vodPublic"]) == (
        str(other.id),
        other.organisation.name,
        False,
    )
