"""Cached public player reads answered before FastAPI's own machinery.

A live event's audience reads the same few player answers thousands of times a second. The player
routes (``StreamRoute``) already answer them from the player-read cache before any access rule or
query runs, but only after FastAPI's exception middleware, its router, its request wrapper and the
route's handler. This layer, the innermost of the application's middleware, answers a cache hit
itself: every outer layer still sees the request and its answer (request id, metrics, access log,
CORS, security headers, the edge checks), and the answer is the one the route would have sent, built
by the same function (``stream_readers.cached_answer``). A miss, or any request it cannot tell is a
public player read, goes on to the route, which reads and fills the cache as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from streamward.api.stream_readers import cached_answer
from streamward.api.streams import PLAYER_READ_ATTRIBUTE
from streamward.runtime import Runtime
from streamward.streams.player_cache import player_cache

# Every player read's path begins so: anything else passes with one string comparison.
_PLAYER_PATHS = "/api/stream"


def player_read_routes(routes: Iterable[APIRoute]) -> list[tuple[str, APIRoute]]:
    """The player-read routes among ``routes``, in the table's order (the order decides which of two
    patterns takes a path, as it does in the router), each with its kind."""
    found = []
    for route in routes:
        kind = getattr(route.endpoint, PLAYER_READ_ATTRIBUTE, None)
        if kind is not None and "GET" in (route.methods or ()):
            if not route.path.startswith(_PLAYER_PATHS):
                raise ValueError(f"a player read outside {_PLAYER_PATHS}: {route.path}")
            found.append((kind, route))
    return found


class PlayerReadFront:
    def __init__(self, app: ASGIApp, *, routes: Sequence[tuple[str, APIRoute]], runtime: Runtime) -> None:
        self.app = app
        self.routes = routes
        self.cache = player_cache(runtime.database)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            await self._answer_or_pass(get_route_path(scope), scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _answer_or_pass(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        if path.startswith(_PLAYER_PATHS):
            for kind, route in self.routes:
                matched = route.path_regex.match(path)
                if matched is None:
                    continue
                params: dict[str, Any] = {
                    name: route.param_convertors[name].convert(value)
                    for name, value in matched.groupdict().items()
                }
                looked = cached_answer(kind, scope, params, self.cache)
                response = looked.response() if looked is not None else None
                if response is not None:
                    scope["route"] = route  # its template names the request in metrics and logs
                    await response(scope, receive, send)
                    return
                break  # the route that takes this path: a miss goes to it
        await self.app(scope, receive, send)
