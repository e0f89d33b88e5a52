"""Access control of the overview's routes, generated from one table.

For every route: no credentials -> 401; each predefined role -> success when its role holds the
permission, 403 ``forbidden`` otherwise; the API key -> success; and, for routes that act on an
object, the same object made in another organisation -> 404 for both our admin and our API key (and
still there for its owner). Each row names a factory that makes the object the call acts on, in
whichever organisation it is given: one fresh object per call, so side effects cannot leak between
credentials. The token service answers in its own envelope (code 1001 for refused credentials).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from streamward.app import create_app
from streamward.authz.permissions import ADMIN_ROLE, PREDEFINED_ROLES
from tests.conftest import CreatedOrg, Env, Member, make_settings
from tests.overview_support import (
    ALL_PACKAGES,
    create_stream,
    import_vod,
    member,
    playback_token,
    set_state,
    use_fake_dns,
)
from tests.routes import RouteInfo, api_routes


@dataclass(frozen=True)
class Made:
    """What a factory made: path parameters, and values the request body may use."""

    params: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


Factory = Callable[[Env, CreatedOrg], Awaitable[Made]]


async def nothing(env: Env, org: CreatedOrg) -> Made:
    return Made()


def a_stream(state: str = "created") -> Factory:
    async def make(env: Env, org: CreatedOrg) -> Made:
        stream = await create_stream(env, org, tags=["matrix"])
        if state != "created":
            await set_state(env, stream["id"], state, before_lock="created" if state == "locked" else None)
        return Made(params={"stream_id": stream["id"]})

    return make


async def a_tag(env: Env, org: CreatedOrg) -> Made:
    tag = f"topic:{uuid.uuid4().hex[:8]}"
    await create_stream(env, org, tags=[tag])
    return Made(params={"name": tag})


async def a_vod_asset(env: Env, org: CreatedOrg) -> Made:
    return Made(params={"asset_id": (await import_vod(env, org))["id"]})


async def a_webhook(env: Env, org: CreatedOrg) -> Made:
    response = await env.client.put(
        "/api/organisation/webhook", json={"webhook": "https://hooks.example.com/in"}, headers=org.api_headers
    )
    assert response.status_code == 200, response.text
    return Made()


async def a_revocable_token(env: Env, org: CreatedOrg) -> Made:
    return Made(values={"token": await playback_token(env, org, orgawide=True, revocable=True)})


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # as in the route table
    body: Callable[[Made], dict[str, Any]] | None = None
    make: Factory = nothing
    # For routes acting on an object: what another organisation's object answers (None: org-level route).
    foreign: tuple[int, str | int] | None = None
    # A documented refusal for the API key instead of success.
    api_key_refusal: tuple[int, str] | None = None
    # Token-service routes: the permission their access rule checks, and the numeric envelope.
    token_service: str | None = None
    rotates_api_key: bool = False

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


NOT_FOUND = (404, "not_found")

CASES = [
    Case("GET", "/api/organisation/apikey"),
    Case("POST", "/api/organisation/apikey/rotate", lambda _: {"confirm": True}, rotates_api_key=True),
    Case("GET", "/api/organisation/playerkey"),
    Case("POST", "/api/organisation/playerkey/rotate", lambda _: {"confirm": True}),
    Case("GET", "/api/organisation/webhook"),
    Case(
        "PUT",
        "/api/organisation/webhook",
        lambda _: {"webhook": "https://hooks.example.com/in", "events": ["stream.created"]},
    ),
    Case("POST", "/api/organisation/webhook/secret/rotate", lambda _: {"confirm": True}, make=a_webhook),
    Case("DELETE", "/api/organisation/webhook", make=a_webhook),
    Case("PUT", "/api/organisation/vod", lambda _: {"public": True}),
    Case("POST", "/api/organisation/playback-keys/rotate", lambda _: {}),
    Case(
        "POST",
        "/api/bintu/token",
        lambda _: {"name": "CI", "expiresInDays": 30},
        api_key_refusal=(400, "user_required"),
    ),
    Case("POST", "/api/stream", lambda _: {"tags": ["news"]}),
    Case("PUT", "/api/stream/{stream_id}/tag", lambda _: {"tags": ["sport"]}, a_stream(), NOT_FOUND),
    Case(
        "PUT",
        "/api/stream/{stream_id}/push_url",
        lambda _: {"url": "rtmp://hooks.example.com/live/key"},
        a_stream(),
        NOT_FOUND,
    ),
    Case("PUT", "/api/stream/{stream_id}/stop", make=a_stream("live"), foreign=NOT_FOUND),
    Case("POST", "/api/stream/{stream_id}/stop", make=a_stream("live"), foreign=NOT_FOUND),
    Case("PUT", "/api/stream/{stream_id}/lock", make=a_stream(), foreign=NOT_FOUND),
    Case("POST", "/api/stream/{stream_id}/lock", make=a_stream(), foreign=NOT_FOUND),
    Case("PUT", "/api/stream/{stream_id}/unlock", make=a_stream("locked"), foreign=NOT_FOUND),
    Case("POST", "/api/stream/{stream_id}/unlock", make=a_stream("locked"), foreign=NOT_FOUND),
    Case("DELETE", "/api/stream/{stream_id}", make=a_stream(), foreign=NOT_FOUND),
    Case("GET", "/api/organisation/player-access"),
    Case("PUT", "/api/organisation/player-access", lambda _: {"tokenRequired": True}),
    Case("GET", "/api/tag"),
    Case("PUT", "/api/tag/{name:path}", lambda _: {"name": "renamed"}, a_tag, NOT_FOUND),
    Case("DELETE", "/api/tag/{name:path}", make=a_tag, foreign=NOT_FOUND),
    Case(
        "POST",
        "/api/vod",
        lambda _: {"title": "Import", "durationSeconds": 12, "url": "https://cdn.example.com/i.mp4"},
    ),
    Case("DELETE", "/api/vod/{asset_id}", make=a_vod_asset, foreign=NOT_FOUND),
    Case("POST", "/api/v1/splay", lambda _: {"orgawide": True}, token_service="playback:create"),
    Case(
        "POST",
        "/api/v1/splay/revoke",
        lambda made: {"token": made.values["token"]},
        make=a_revocable_token,
        foreign=(400, 2012),
        token_service="playback:revoke",
    ),
]

# Routes with other access rules, each covered by the tests named here.
SPECIAL = {
    "GET /api/organisation": "test_organisation.py (foundation)",
    "GET /api/stream": "test_player_access.py: credentials, player key, anonymous",
    "GET /api/stream/public": "test_player_access.py: credentials, player key, anonymous",
    "GET /api/stream/{stream_id}": "test_player_access.py: credentials, player key, anonymous",
    "GET /api/stream/{stream_id}/group": "test_player_access.py: credentials, player key, anonymous",
    "GET /api/vod": "test_vod.py: public vs private, strangers",
    "GET /api/vod/{asset_id}": "test_vod.py: public vs private, strangers",
    "POST /api/v1/splay/verify": "test_playback.py: public, every attack",
    "GET /.well-known/jwks.json": "test_playback.py: public key set",
    "GET /api/operator/organisation": "test_operator.py: operator token",
    "GET /api/operator/organisation/{organisation_id}": "test_operator.py: operator token",
    "PATCH /api/operator/organisation/{organisation_id}": "test_operator.py: operator token",
}
OUR_MODULES = {
    "streamward.api.organisation",
    "streamward.api.operator",
    "streamward.api.streams",
    "streamward.api.vod",
    "streamward.api.playback",
}


def _route_table() -> dict[str, tuple[RouteInfo, str]]:
    from fastapi.routing import APIRoute

    from tests.routes import all_routes

    app = create_app(make_settings("sqlite+aiosqlite:///:memory:", Path("/nonexistent")))
    modules = {
        (method, route.path): route.endpoint.__module__
        for route in all_routes(app)
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    return {f"{r.method} {r.path}": (r, modules[(r.method, r.path)]) for r in api_routes(app)}


ROUTES = _route_table()


def test_the_table_covers_every_route_of_the_overview() -> None:
    ours = {key for key, (_, module) in ROUTES.items() if module in OUR_MODULES}
    tabled = {case.id for case in CASES}
    assert tabled <= ours, f"table rows without a route: {tabled - ours}"
    assert ours == tabled | set(SPECIAL), f"routes nobody tests for access: {ours - tabled - set(SPECIAL)}"


def _fill(path: str, made: Made) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: made.params[m.group(1)], path)


def _code(response: httpx.Response) -> str | int:
    code: str | int = response.json()["error"]["code"]
    return code


async def _check(
    env: Env, case: Case, mine: CreatedOrg, theirs: CreatedOrg, members: dict[str, Member]
) -> None:
    route, _ = ROUTES[case.id]
    permission = case.token_service or route.permission
    assert permission, "no permission to check"
    unauthenticated: str | int = 1001 if case.token_service else "unauthenticated"
    forbidden: str | int = 1001 if case.token_service else "forbidden"
    # Refused calls share one object (a refusal must leave it untouched); a call expected to succeed
    # gets a fresh one, since it may change or delete it.
    probe = await case.make(env, mine)

    async def call(headers: dict[str, str], *, succeeds: bool) -> httpx.Response:
        made = await case.make(env, mine) if succeeds else probe
        body = case.body(made) if case.body else None
        response = await env.client.request(case.method, _fill(case.path, made), json=body, headers=headers)
        if case.rotates_api_key and response.status_code == 200:
            mine.api_key = response.json()["apiKey"]
        return response

    anonymous = await call({}, succeeds=False)
    assert (anonymous.status_code, _code(anonymous)) == (
        403 if case.token_service else 401,
        unauthenticated,
    ), anonymous.text

    for role in PREDEFINED_ROLES.values():
        response = await call(members[role.name].headers, succeeds=permission in role.permissions)
        if permission in role.permissions:
            assert 200 <= response.status_code < 300, (role.name, response.text)
        else:
            assert (response.status_code, _code(response)) == (403, forbidden), (role.name, response.text)

    if case.foreign is not None:
        made = await case.make(env, theirs)
        body = case.body(made) if case.body else None
        for headers in (members[ADMIN_ROLE].headers, mine.api_headers):
            response = await env.client.request(
                case.method, _fill(case.path, made), json=body, headers=headers
            )
            assert (response.status_code, _code(response)) == case.foreign, (
                "another organisation",
                response.text,
            )
        # The object was there all along, untouched: its owner can still act on it.
        owner = await env.client.request(
            case.method, _fill(case.path, made), json=body, headers=theirs.api_headers
        )
        assert 200 <= owner.status_code < 300, ("owner", owner.text)

    with_key = await call(mine.api_headers, succeeds=True)
    if case.api_key_refusal is not None:
        assert (with_key.status_code, _code(with_key)) == case.api_key_refusal, ("API key", with_key.text)
    else:
        assert 200 <= with_key.status_code < 300, ("API key", with_key.text)


async def test_access_matrix(env: Env) -> None:
    """Every row against one pair of organisations; all failing rows are reported together."""
    use_fake_dns(env)
    mine = await env.org("Mine", packages=ALL_PACKAGES)
    theirs = await env.org("Theirs", packages=ALL_PACKAGES)
    members = {role: await member(env, mine, role) for role in PREDEFINED_ROLES}
    failures = []
    for case in CASES:
        try:
            await _check(env, case, mine, theirs, members)
        except AssertionError as failure:
            failures.append(f"{case.id}: {failure}")
    assert not failures, "\n".join(failures)
