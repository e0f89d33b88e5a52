"""The route table (web.routing): every route is a ``Route`` (its request's session ends with it), and
the routers' path index never hides a route: each route is still the one a request for its path
reaches, whatever router it sits in and wherever that router is in the table."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route as StarletteRoute

from streamward.app import create_app
from streamward.openapi import api_routes
from streamward.web.routing import Route, Router, literal_starts
from tests.conftest import make_settings


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(make_settings("sqlite+aiosqlite:///:memory:", tmp_path))


def _sample_path(route: APIRoute) -> str:
    """A concrete path the route's pattern matches: each parameter becomes a plausible value."""
    return re.sub(r"\{[^}:]+(:path)?\}", lambda m: "a/b" if m.group(1) else "sample1", route.path)


async def _matched_route(app: Any, method: str, path: str) -> Any:
    """The route the application's router selects for ``method path`` (the handler runs too, on an
    empty database and without credentials; whatever it answers or raises does not matter here)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "app": app,
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: dict[str, Any]) -> None:
        return None

    with contextlib.suppress(Exception):  # the selection is what is tested, not the answer
        await app.router(scope, receive, send)
    return scope.get("route")


def test_every_route_is_a_streamward_route(app: Any) -> None:
    routes = list(api_routes(app.routes))
    assert len(routes) > 100
    foreign = [f"{sorted(r.methods)} {r.path}" for r in routes if not isinstance(r, Route)]
    assert not foreign, foreign


async def test_the_path_index_hides_no_route(app: Any) -> None:
    """Every route, asked for at a sample of its own path, is the route the request reaches (or,
    where two patterns overlap, one with the same path and method)."""
    checked = 0
    for route in api_routes(app.routes):
        path = _sample_path(route)
        if not StarletteRoute(route.path, endpoint=lambda: None).path_regex.fullmatch(path):
            continue  # a parameter with its own pattern: no generic sample
        method = sorted(route.methods)[0]
        matched = await _matched_route(app, method, path)
        assert matched is not None, f"{method} {path}: no route reached"
        # Itself, or a route declared before it whose pattern also takes this path and method.
        assert matched is route or (matched.path_regex.fullmatch(path) and method in matched.methods), (
            f"{method} {path}: reached {matched.path}"
        )
        checked += 1
    assert checked > 100


async def test_an_unknown_path_is_still_a_404(app: Any) -> None:
    assert await _matched_route(app, "GET", "/api/no-such-thing") is None


def test_literal_starts() -> None:
    router = Router(prefix="/api/example")

    @router.get("")
    async def listing() -> None: ...

    @router.get("/{item_id}/part")
    async def part(item_id: str) -> None: ...

    assert literal_starts(router.routes) == ("/api/example", "/api/example/")
    outer = Router()
    outer.include_router(router)
    assert set(literal_starts(outer.routes)) == {"/api/example", "/api/example/"}


def test_a_router_refuses_a_route_class_that_would_not_end_the_session() -> None:
    with pytest.raises(TypeError):
        Router(route_class=APIRoute)


def test_a_router_is_never_included_under_a_prefix() -> None:
    """Its path index holds its routes' own paths: a prefix added on inclusion would hide them."""
    child = Router(prefix="/api/example")
    with pytest.raises(ValueError, match="without a prefix"):
        Router().include_router(child, prefix="/v1")
    with pytest.raises(ValueError, match="without a prefix"):
        Router(prefix="/api").include_router(child)


async def test_a_route_added_after_the_first_request_is_reached(tmp_path: Path) -> None:
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:", tmp_path))
    outer, inner = Router(), Router(prefix="/api/late")

    @inner.get("/first")
    async def first() -> None: ...

    outer.include_router(inner)
    app.include_router(outer)
    if not any(hasattr(route, "original_router") for route in app.router.routes):
        pytest.skip("this FastAPI copies a router's routes when it is included: a later one is never reached")
    assert (await _matched_route(app, "GET", "/api/late/first")).path == "/api/late/first"

    @inner.get("/second")
    async def second() -> None: ...

    reached = await _matched_route(app, "GET", "/api/late/second")
    assert reached is not None and reached.path == "/api/late/second"
