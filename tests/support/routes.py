"""The route table, read the way the access-control tests need it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from streamward.web.access import ACCESS_RULE_ATTRIBUTE


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    rules: tuple[str, ...]


def _rules(dependant: Dependant) -> Iterator[str]:
    rule = getattr(dependant.call, ACCESS_RULE_ATTRIBUTE, None)
    if rule:
        yield rule
    for sub in dependant.dependencies:
        yield from _rules(sub)


def _flatten(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Routes of the app, descending into included routers (FastAPI keeps those as one entry each;
    routers are included without an extra prefix, so their routes' paths are already complete)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flatten(included.routes)
        else:
            yield route


def all_routes(app: FastAPI) -> list[BaseRoute]:
    return list(_flatten(app.routes))


def api_routes(app: FastAPI) -> list[RouteInfo]:
    routes = []
    for route in all_routes(app):
        if isinstance(route, APIRoute):
            rules = tuple(dict.fromkeys(_rules(route.dependant)))
            for method in sorted(route.methods):
                routes.append(RouteInfo(method, route.path, rules))
    return routes
