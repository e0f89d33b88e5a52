"""The OpenAPI document tells the truth about refusals, and the API reference page loads nothing
from elsewhere.

* every operation documents the error statuses its access rule and inputs imply, in the error
  envelope it answers with; FastAPI's own 422 shape is gone;
* the security schemes exist and each operation's ``security`` follows its access rule;
* refusals the server really gives (over HTTP, as a client) have a documented status and code;
* ``/api/docs`` carries a strict CSP and references only same-origin assets, which are served.
"""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from streamward.app import create_app
from streamward.authz.permissions import NANO_READ_ONLY
from streamward.docs import DOCS_CSP
from streamward.openapi import (
    ACCESS_RULES,
    REFUSALS,
    SECURITY_OVERRIDES,
    access_rule_of,
    api_routes,
    endpoint_name,
)
from tests.conftest import Env, make_settings

ERROR_REF = "#/components/schemas/Error"
SPLAY_REF = "#/components/schemas/SplayError"


def _app() -> FastAPI:
    """An app only for reading its route table and document (no database is touched)."""
    return create_app(make_settings("sqlite+aiosqlite:///:memory:", Path("/nonexistent")))


APP = _app()
SPEC: dict[str, Any] = APP.openapi()
OPERATIONS = [
    pytest.param(method.upper(), path, operation, id=f"{method.upper()} {path}")
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
]


def _refs(schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return {schema["$ref"]}
    return {ref for option in schema.get("anyOf", []) for ref in _refs(option)}


def _operation(method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = SPEC["paths"][path][method.lower()]
    return operation


def _documented_codes(operation: dict[str, Any], status: int) -> list[str]:
    """The error codes a response's description lists (`code`, `code`...)."""
    response = operation["responses"].get(str(status))
    assert response is not None, f"{status} is not documented"
    return re.findall(r"`([a-z_]+)`", response["description"])


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS)
def test_every_error_response_has_the_error_envelope(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    errors = {status: r for status, r in operation["responses"].items() if status.startswith(("4", "5"))}
    for status, response in errors.items():
        schema = response["content"]["application/json"]["schema"]
        assert _refs(schema) <= {ERROR_REF, SPLAY_REF} and _refs(schema), (method, path, status, schema)
        assert _documented_codes(operation, int(status)), (method, path, status)


def test_fastapi_validation_shape_is_replaced() -> None:
    schemas = SPEC["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert schemas["Error"]["properties"]["error"]["required"] == ["code", "message"]


def test_statuses_follow_access_rule_and_inputs() -> None:
    checked = 0
    for route in api_routes(APP.routes):
        if not route.include_in_schema:
            continue
        rule = access_rule_of(route)
        for method in route.methods or ():
            operation = _operation(method, route.path_format)
            statuses = {int(s) for s in operation["responses"]}
            if rule.startswith("permission:"):
                assert {400, 401, 403} <= statuses, (method, route.path)
                assert operation["security"] == [{"bintuToken": []}, {"apiKey": []}]
            if rule == "public":
                assert not {401, 403} & statuses or endpoint_name(route) in REFUSALS, (method, route.path)
            if any(p["in"] == "path" for p in operation.get("parameters", [])):
                assert 404 in statuses, (method, route.path)
            if "requestBody" in operation:
                assert {400, 413} <= statuses, (method, route.path)
                splay = route.path.startswith("/api/v1/splay")
                assert (422 in statuses) != splay, (method, route.path)  # the token service: 400
            checked += 1
    assert checked >= 50


def test_every_access_rule_and_registry_entry_is_known() -> None:
    routes = [route for route in api_routes(APP.routes) if route.include_in_schema]
    rules = {access_rule_of(route) for route in routes}
    unknown = {rule for rule in rules if not rule.startswith("permission:") and rule not in ACCESS_RULES}
    assert not unknown, f"document these access rules in streamward.openapi.ACCESS_RULES: {unknown}"
    endpoints = {endpoint_name(route) for route in routes}
    stale = (set(REFUSALS) | set(SECURITY_OVERRIDES)) - endpoints
    assert not stale, f"streamward.openapi names endpoints that do not exist: {stale}"


def test_security_schemes_let_the_reference_authorise() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["bintuToken"] == schemes["bintuToken"] | {
        "type": "apiKey",
        "in": "header",
        "name": "X-BINTU-TOKEN",
    }
    assert schemes["apiKey"] == schemes["apiKey"] | {
        "type": "apiKey",
        "in": "header",
        "name": "X-BINTU-APIKEY",
    }
    assert schemes["operatorToken"]["type"] == "http"
    assert schemes["operatorToken"]["scheme"] == "bearer"
    assert _operation("GET", "/api/operator/organisation")["security"] == [{"operatorToken": []}]
    assert "security" not in _operation("POST", "/api/user/validate")
    # Anonymous or with credentials: the empty requirement comes first.
    assert _operation("GET", "/api/vod")["security"][0] == {}


def test_token_service_documents_its_own_envelope() -> None:
    issue = _operation("POST", "/api/v1/splay")
    forbidden = issue["responses"]["403"]["content"]["application/json"]["schema"]
    assert _refs(forbidden) == {SPLAY_REF}
    too_large = issue["responses"]["413"]["content"]["application/json"]["schema"]
    assert _refs(too_large) == {ERROR_REF}  # answered by the size limit, before the route


async def _check_refusal(response: httpx.Response, method: str, path: str) -> None:
    operation = _operation(method, path)
    assert str(response.status_code) in operation["responses"], (method, path, response.text)
    code = response.json()["error"]["code"]
    assert code in _documented_codes(operation, response.status_code), (method, path, code)


async def test_real_refusals_are_documented(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    observer = await env.member(org, NANO_READ_ONLY.name)
    client = env.client

    await _check_refusal(await client.get("/api/organisation"), "GET", "/api/organisation")
    await _check_refusal(
        await client.post("/api/stream", json={}, headers=observer.headers), "POST", "/api/stream"
    )
    await _check_refusal(
        await client.get(f"/api/user/{uuid.uuid4()}", headers=admin.headers), "GET", "/api/user/{user_id}"
    )
    await _check_refusal(
        await client.post(
            "/api/permission",
            content=b"{not json",
            headers=admin.headers | {"content-type": "application/json"},
        ),
        "POST",
        "/api/permission",
    )
    await _check_refusal(
        await client.post("/api/permission", json={"name": 7}, headers=admin.headers),
        "POST",
        "/api/permission",
    )
    # The organisation's only nanoAdmin cannot be removed.
    await _check_refusal(
        await client.delete(f"/api/user/{admin.id}", headers=admin.headers), "DELETE", "/api/user/{user_id}"
    )
    await _check_refusal(
        await client.post("/api/organisation/webhook/test", headers=admin.headers),
        "POST",
        "/api/organisation/webhook/test",
    )


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script" and "src" not in found

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


async def test_docs_page_loads_only_its_own_assets_under_a_strict_csp() -> None:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/api/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == DOCS_CSP
        assert "script-src 'self';" in DOCS_CSP and "unsafe" not in DOCS_CSP
        links = _Links()
        links.feed(page.text)
        assert links.inline_scripts == 0
        assert links.urls and all(url.startswith("/") and not url.startswith("//") for url in links.urls)
        assert "http://" not in page.text and "https://" not in page.text
        for url in links.urls:
            asset = await client.get(url)
            assert asset.status_code == 200, url
        assert (await client.get("/api/docs/assets/swagger-ui.LICENSE")).status_code == 404
        spec = await client.get("/api/openapi.json")
        assert spec.status_code == 200 and spec.json()["components"]["securitySchemes"]
