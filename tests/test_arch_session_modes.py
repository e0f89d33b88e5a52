"""Every route that touches the database says whether it reads or writes (``@reads`` / ``@writes``),
and the session it gets follows the declaration, not the HTTP method."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import text

from streamward.app import create_app
from streamward.openapi import api_routes
from streamward.web.access import SESSION_USER_ATTRIBUTE
from streamward.web.session import declared_mode, request_session
from tests.conftest import Env, make_settings


def _calls(dependant: Dependant) -> Iterator[object]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


@pytest.fixture
def routes(tmp_path: Path) -> list[APIRoute]:
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:", tmp_path))
    found = list(api_routes(app.routes))
    assert len(found) > 50, "the route table was not found"
    return found


def test_every_route_that_uses_the_session_declares_reads_or_writes(routes: list[APIRoute]) -> None:
    # Through DbSession, or through a rule that looks the credential up (it opens the session itself).
    using = [
        route
        for route in routes
        if any(
            call is request_session or getattr(call, SESSION_USER_ATTRIBUTE, False)
            for call in _calls(route.dependant)
        )
    ]
    assert len(using) > 50
    undeclared = [f"{sorted(r.methods)} {r.path}" for r in using if declared_mode(r.endpoint) is None]
    assert not undeclared, undeclared


def test_declarations_are_not_the_http_method(routes: list[APIRoute]) -> None:
    """The routes the method would have got wrong: a POST that only reads, a GET that writes."""
    modes = {(method, r.path): declared_mode(r.endpoint) for r in routes for method in r.methods}
    assert modes[("POST", "/api/v1/splay/verify")] == "read"
    assert modes[("POST", "/api/apikey")] == "read"
    assert modes[("GET", "/api/organisation/apikey")] == "write"  # the reveal is audited


async def test_a_reading_route_takes_no_write_lock(env: Env) -> None:
    """On SQLite a writer takes the database's write lock at BEGIN IMMEDIATE: a reading request
    (here a POST) is answered while another connection holds that lock."""
    if env.engine_name != "sqlite":
        pytest.skip("the write lock is SQLite's")
    async with env.runtime.database.session(write=True) as holder:
        await holder.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock is held
        response = await env.client.post("/api/v1/splay/verify", json={"token": "not.a.token"}, timeout=5)
        assert response.status_code in (400, 403), response.text  # answered, not stuck on the lock
        await holder.rollback()
