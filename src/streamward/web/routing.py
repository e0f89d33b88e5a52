"""The router every path of Streamward is declared on.

FastAPI finds a request's route by asking each included router in turn, and a router by trying each
of its routes' patterns. Since FastAPI 0.16x an included router is no longer flattened into the
application's table but asked in place, and each route it tries costs a few microseconds of scope
bookkeeping: a path served by the last router (``/healthz``, a dashboard page) walked some ninety
routes, measured at about 0.3 ms of CPU per request, more than the rest of a health check. A
``Router`` knows the literal beginning of each of its paths (up to the first ``{``) and turns away,
with one ``str.startswith``, a request that none of them can match; the routers that can still
decide as FastAPI always has. (Where FastAPI flattens included routers, it never asks, and nothing
changes.)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from streamward.web.session import in_request_transaction

# Matches every path: the router cannot tell (a route without a literal beginning, or an entry it
# cannot see into), so it asks its routes as FastAPI does.
_EVERY_PATH = ("",)


class Route(APIRoute):
    """A route whose request's database session (``DbSession``) ends with its handler: see
    ``web.session.in_request_transaction``. Routes that need more of their own (player reads, the
    token service) subclass it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def transaction_handler(request: Request) -> Response:
            return await in_request_transaction(request, handler)

        return transaction_handler


class Router(APIRouter):
    """Every Streamward router: its routes are ``Route``s (unless it names a subclass), and it
    turns away the paths none of them can match before asking them."""

    _starts: tuple[str, ...] = _EVERY_PATH
    _starts_of: object = None  # the version of the route table the beginnings were computed for
    _own_version_seen: object = None  # this router's own table version when it was last looked at
    _includes_routers = True  # until looked at: whether its table holds included routers

    def __init__(self, *, route_class: type[APIRoute] = Route, **options: Any) -> None:
        if not issubclass(route_class, Route):
            raise TypeError("a streamward route class derives from web.routing.Route")
        super().__init__(route_class=route_class, **options)

    def include_router(self, router: APIRouter, *, prefix: str = "", **options: Any) -> None:
        # The beginnings are the routes' own paths: a prefix added on inclusion (or by a parent
        # router's prefix) would be missing from them, and the filter would hide those routes.
        if prefix or (self.prefix and isinstance(router, Router)):
            raise ValueError("a streamward Router is included without a prefix (its paths are complete)")
        super().include_router(router, **options)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        version = self._table_version()
        if version != self._starts_of:
            self._starts = literal_starts(self.routes)
            self._starts_of = version
        if not get_route_path(scope).startswith(self._starts):
            return Match.NONE, {}
        return super().matches(scope)

    def _table_version(self) -> object:
        # FastAPI 0.16x counts changes to a router's own table (``_routes_version``), and sums its
        # included routers' counts on demand (``_get_routes_version``, which walks the table: most of
        # what turning away a foreign path cost, asked of every router for every request). Only a
        # router that includes others needs the sum. Elsewhere the number of routes serves.
        own = getattr(self, "_routes_version", None)
        versioned = getattr(self, "_get_routes_version", None)
        if own is None or not callable(versioned):
            return len(self.routes)
        if own != self._own_version_seen:  # its own table changed: an inclusion would show here
            self._includes_routers = any(hasattr(route, "original_router") for route in self.routes)
            self._own_version_seen = own
        return versioned() if self._includes_routers else own


def literal_starts(routes: list[BaseRoute]) -> tuple[str, ...]:
    """What every path these routes match begins with: one entry per route, its path up to the first
    parameter (a mount's path: its own beginning). A router included without a prefix of its own
    contributes its routes' beginnings; anything else makes the answer "any path"."""
    starts: list[str] = []
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str):
            starts.append(path.split("{", 1)[0])
            continue
        included: Any = getattr(route, "original_router", None)
        context: Any = getattr(route, "include_context", None)
        if isinstance(included, APIRouter) and getattr(context, "prefix", None) == "":
            starts.extend(literal_starts(included.routes))
            continue
        return _EVERY_PATH
    return tuple(starts) or _EVERY_PATH
