"""Access control, generated from the route table rather than written per route.

* every route declares exactly one access rule (a permission, public, or a named scheme);
* for every permission-guarded route: no credentials -> 401, a role lacking the permission -> 403,
  a role holding it and the API key -> neither 401 nor 403.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from streamward.app import FRAMEWORK_PUBLIC_PATHS, create_app
from streamward.authz.permissions import ALL_PERMISSIONS, PREDEFINED_ROLES
from tests.conftest import Env, make_settings
from tests.routes import all_routes, api_routes, sample_body

KNOWN_SCHEMES = {
    "public",
    "authenticated",
    "dashboard-public",
    "ingest",
    "operator",
    # bintu stream reads: credentials holding stream:read, the player key, or anonymous players
    # (streams/player.py); its matrix is in test_player_access.py.
    "player",
    "token-service",
    "vod-visibility",
}


def _app() -> FastAPI:
    """An app only for reading its route table (no database is touched)."""
    return create_app(make_settings("sqlite+aiosqlite:///:memory:", Path("/nonexistent")))


def test_every_route_declares_exactly_one_access_rule() -> None:
    app = _app()
    unclassified, ambiguous = [], []
    routes = api_routes(app)
    assert len(routes) >= 3, "the route table looks empty: is the walk still right for this FastAPI?"
    for route in routes:
        if not route.rules:
            unclassified.append(f"{route.method} {route.path}")
        elif len(route.rules) > 1:
            ambiguous.append(f"{route.method} {route.path}: {route.rules}")
        for rule in route.rules:
            if rule.startswith("permission:"):
                assert rule.removeprefix("permission:") in ALL_PERMISSIONS
            elif rule.startswith("dashboard:"):
                assert rule.removeprefix("dashboard:") in ALL_PERMISSIONS | {"signed-in"}
            else:
                assert rule in KNOWN_SCHEMES, f"unknown access rule {rule!r} on {route.path}"
    assert not unclassified, f"routes without an access rule: {unclassified}"
    assert not ambiguous, f"routes with several access rules: {ambiguous}"
    # Framework routes that are not APIRoutes must be listed as public in one place.
    others = {r.path for r in all_routes(app) if isinstance(r, Route) and not isinstance(r, APIRoute)}
    assert others <= FRAMEWORK_PUBLIC_PATHS, others - FRAMEWORK_PUBLIC_PATHS


GUARDED = [r for r in api_routes(_app()) if r.permission]


@pytest.mark.parametrize("route", GUARDED, ids=lambda r: f"{r.method} {r.path}")
async def test_guarded_route_matrix(env: Env, route) -> None:  # type: ignore[no-untyped-def]
    org = await env.org()
    path, body = route.sample_path(), sample_body(route.method)

    anonymous = await env.client.request(route.method, path, json=body)
    assert anonymous.status_code == 401, anonymous.text

    for role in PREDEFINED_ROLES.values():
        member = await env.member(org, role.name)
        response = await env.client.request(route.method, path, json=body, headers=member.headers)
        if route.permission in role.permissions:
            assert response.status_code not in (401, 403), (role.name, response.text)
        else:
            assert response.status_code == 403, (role.name, response.text)
            assert response.json()["error"]["code"] == "forbidden"

    with_key = await env.client.request(route.method, path, json=body, headers=org.api_headers)
    assert with_key.status_code not in (401, 403), with_key.text
