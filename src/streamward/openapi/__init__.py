"""The OpenAPI document's error responses and security, derived in one place from the route table.

FastAPI documents a route's success and, for routes with parameters, its own 422 shape. Every
deliberate refusal (400, 401, 403, 404, 409, 413, 422, 429) is added here instead, with the error
envelope the route really answers with:

* from the route's access rule (``streamward_access_rule`` on its dependency, see web/access.py):
  credentials that may be missing or wrong (401), a permission that may be lacking (403), the
  operator API or ingest being switched off (404), and the matching OpenAPI ``security``;
* from its inputs: path parameters name something that may not exist (404); a body or query may be
  malformed or carry control characters (400) or fail validation (422); a body may be too large (413);
  the query parameters a route reads through a model (``web.query``) are documented here too;
* from ``REFUSALS`` below, for what the route's service decides and nothing in its signature shows
  (409 conflicts, 429 rate limits, 403 escalation or a missing package...).

The token service (``/api/v1/splay*``, routes of class ``SplayRoute``) answers in its own envelope,
with its own statuses (bad credentials are 403, validation failures 400). What the middleware in
front of every route refuses (``EDGE_CODES``: control characters, nesting, size) comes in the
common envelope there too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from streamward.api.playback import SplayRoute
from streamward.openapi.catalogue import (
    ACCESS_RULES,
    ERROR_SCHEMA,
    ERROR_SCHEMAS,
    FASTAPI_VALIDATION_SCHEMAS,
    REFUSALS,
    SECURITY_OVERRIDES,
    SECURITY_SCHEMES,
    SPLAY_ERROR_SCHEMA,
    STATUS_TITLES,
    Refusal,
    rule_doc,
)
from streamward.web.access import ACCESS_RULE_ATTRIBUTE
from streamward.web.query import document_query_model, query_models


def endpoint_name(route: APIRoute) -> str:
    """The key of ``REFUSALS``: ``<module under streamward>.<function>``."""
    return f"{route.endpoint.__module__.removeprefix('streamward.')}.{route.endpoint.__name__}"


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """The app's API routes, descending into included routers (kept as one entry each by FastAPI;
    the app includes them without an extra prefix, so their paths are complete)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def access_rules(dependant: Dependant) -> Iterator[str]:
    rule = getattr(dependant.call, ACCESS_RULE_ATTRIBUTE, None)
    if rule:
        yield rule
    for sub in dependant.dependencies:
        yield from access_rules(sub)


def access_rule_of(route: APIRoute) -> str:
    return next(access_rules(route.dependant), "public")


def _derived_refusals(rule: str, operation: dict[str, Any], *, splay: bool) -> list[Refusal]:
    refusals = list(rule_doc(rule).refusals)
    parameters = operation.get("parameters", [])
    if any(parameter["in"] == "path" for parameter in parameters):
        refusals.append((404, "not_found"))
    has_body = "requestBody" in operation
    if has_body:
        refusals += [(400, "malformed_json"), (400, "too_deep"), (413, "payload_too_large")]
    if has_body or parameters:
        refusals.append((400, "invalid_text"))
        if any(parameter.get("name") == "cursor" for parameter in parameters):
            refusals.append((400, "invalid_cursor"))
        # The token service reports every validation failure as a 400 of its own.
        refusals.append((400, "parameter_missing") if splay else (422, "validation_error"))
    return refusals


# Refused by middleware before any route runs (streamward.edge, BodySizeLimit): the common envelope
# on every route, the token service's included.
EDGE_CODES = frozenset({"invalid_text", "too_deep", "payload_too_large"})


def _ref(schema: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{schema}"}


def _response(status: int, codes: list[str], *, splay: bool, title: str | None) -> dict[str, Any]:
    envelopes = {ERROR_SCHEMA if code in EDGE_CODES or not splay else SPLAY_ERROR_SCHEMA for code in codes}
    schema = (
        _ref(envelopes.pop())
        if len(envelopes) == 1
        else {"anyOf": [_ref(SPLAY_ERROR_SCHEMA), _ref(ERROR_SCHEMA)]}
    )
    return {
        "description": f"{title or STATUS_TITLES.get(status, 'Refused')}: "
        + ", ".join(f"`{c}`" for c in codes),
        "content": {"application/json": {"schema": schema}},
    }


def document_errors(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Add every route's error responses and security requirement to ``schema`` (in place)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(ERROR_SCHEMAS)
    components["securitySchemes"] = SECURITY_SCHEMES
    for route in api_routes(routes):
        if not route.include_in_schema:
            continue
        rule, endpoint = access_rule_of(route), endpoint_name(route)
        splay = isinstance(route, SplayRoute)
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            for model in query_models(route.dependant):
                parameters, referred = document_query_model(model)
                operation.setdefault("parameters", []).extend(parameters)
                for name, referred_schema in referred.items():
                    schemas.setdefault(name, referred_schema)
            by_status: dict[int, list[str]] = {}
            refusals = [*_derived_refusals(rule, operation, splay=splay), *REFUSALS.get(endpoint, ())]
            for status, code in refusals:
                codes = by_status.setdefault(status, [])
                if code not in codes:
                    codes.append(code)
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's own shape: never what this API answers
            for status in sorted(by_status):
                # A description the route gives itself (``responses=`` in its decorator) stays.
                title = responses.get(str(status), {}).get("description")
                responses[str(status)] = _response(status, by_status[status], splay=splay, title=title)
            security = SECURITY_OVERRIDES.get(endpoint) or rule_doc(rule).security
            if security:
                operation["security"] = security


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/api/openapi.json``) return the document with its errors."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            document_errors(document, app.routes)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = [
    "ACCESS_RULES",
    "REFUSALS",
    "SECURITY_OVERRIDES",
    "access_rule_of",
    "api_routes",
    "document_errors",
    "endpoint_name",
    "install_openapi",
]
