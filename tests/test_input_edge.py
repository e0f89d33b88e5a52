"""Text at the edge: control characters, over-long values and deep JSON are a 4xx, never a 500.

One generated test walks the route table and sends a NUL byte in every query parameter, path
parameter and string body field of every route, as an admin; the others pin the cases the attack
pass found (each answered 500 on PostgreSQL before the fix).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import select

from streamward.app import create_app
from streamward.audit.models import AuditEntry
from streamward.ingest.service import MAX_FIELD_LENGTH
from tests.conftest import Env, Member, make_settings
from tests.support.routes import all_routes

INGEST_SECRET = "ingest-secret-for-tests-0123456789"
OPERATOR_TOKEN = "operator-token-for-tests-0123456789"
NUL = "a\x00b"
# Form fields the dashboard's forms post (pages have no OpenAPI schema to read them from).
PAGE_FORM_FIELDS = ("csrf_token", "email", "password", "name", "description", "url", "role", "tags")
# Fields media servers report to /api/ingest/* (read from the request, not from a schema).
INGEST_FIELDS = ("call", "name", "app", "addr", "clientid")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "ingest_secret": INGEST_SECRET,
        "operator_token": OPERATOR_TOKEN,
        "allow_private_webhook_targets": True,
    }


def _app() -> FastAPI:
    """An app only for reading its route table and OpenAPI schema."""
    return create_app(make_settings("sqlite+aiosqlite:///:memory:", Path("/nonexistent")))


@dataclass(frozen=True)
class Probe:
    """One request carrying a NUL byte in one place."""

    where: str  # query | path | json | form
    name: str
    path: str
    params: dict[str, str] | None = None
    json_body: Any = None
    form: dict[str, str] | None = None


_PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


def _fill(path: str, poisoned: str | None = None) -> str:
    def value(match: re.Match[str]) -> str:
        return "a%00b" if match.group(1) == poisoned else str(uuid.uuid4())

    return _PARAM.sub(value, path)


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _string_slots(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> list[Any]:
    """Every way to put NUL into one string of a body of this schema: a list of sample bodies."""
    schema = _resolve(schema, components)
    if depth > 4:
        return []
    options = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    if options:
        return [body for option in options for body in _string_slots(option, components, depth)]
    kind = schema.get("type")
    if kind == "string":
        return [NUL]
    if kind == "array":
        return [[item] for item in _string_slots(schema.get("items", {}), components, depth + 1)]
    if kind == "object" or "properties" in schema:
        bodies = [
            {name: sample}
            for name, field in schema.get("properties", {}).items()
            for sample in _string_slots(field, components, depth + 1)
        ]
        # A key is a string too.
        return [*bodies, {NUL: "x"}]
    return []


def _query_names(dependant: Dependant) -> list[str]:
    """Query parameters of a route and of every dependency it declares."""
    names = [param.alias for param in dependant.query_params]
    for sub in dependant.dependencies:
        names += _query_names(sub)
    return list(dict.fromkeys(names))


def _probes(app: FastAPI) -> dict[str, list[Probe]]:
    openapi = app.openapi()
    components = openapi.get("components", {}).get("schemas", {})
    found: dict[str, list[Probe]] = {}
    for route in all_routes(app):
        if not isinstance(route, APIRoute):
            continue
        for method in sorted(route.methods):
            probes: list[Probe] = []
            for name in _query_names(route.dependant):
                probes.append(Probe("query", name, _fill(route.path), params={name: NUL}))
            for name in _PARAM.findall(route.path):
                probes.append(Probe("path", name, _fill(route.path, name)))
            if method in {"POST", "PUT", "PATCH"}:
                operation = openapi["paths"].get(route.path_format, {}).get(method.lower(), {})
                content = operation.get("requestBody", {}).get("content", {})
                schema = content.get("application/json", {}).get("schema")
                if schema is not None:
                    for body in _string_slots(schema, components):
                        probes.append(Probe("json", "body", _fill(route.path), json_body=body))
                else:
                    fields = INGEST_FIELDS if route.path.startswith("/api/ingest") else PAGE_FORM_FIELDS
                    for field in fields:
                        form = {other: "x" for other in fields} | {field: NUL}
                        probes.append(Probe("form", field, _fill(route.path), form=form))
                        probes.append(Probe("json", field, _fill(route.path), json_body=form))
            found[f"{method} {route.path}"] = probes
    return found


PROBES = _probes(_app())


async def _admin(env: Env) -> Member:
    org = await env.org(packages=["vod", "transcoding", "secure_playback", "live_processing"])
    return await env.member(org, "nanoAdmin")


def _credentials(admin: Member) -> dict[str, str]:
    return {
        "X-BINTU-TOKEN": admin.token or "",
        "X-Ingest-Secret": INGEST_SECRET,
        "Authorization": f"Bearer {OPERATOR_TOKEN}",
        "Cookie": f"sw_session={admin.token}",
    }


@pytest.mark.parametrize("route", sorted(PROBES), ids=str)
async def test_nul_anywhere_in_any_route_is_refused_as_invalid_text(env: Env, route: str) -> None:
    method = route.split(" ", 1)[0]
    admin = await _admin(env)
    headers = _credentials(admin)
    for probe in PROBES[route]:
        response = await env.client.request(
            method,
            probe.path,
            params=probe.params,
            json=probe.json_body,
            data=probe.form,
            headers=headers,
        )
        where = f"{probe.where} {probe.name} {probe.json_body or probe.form or probe.params or ''}"
        assert response.status_code == 400, (where, response.status_code, response.text[:300])
        if probe.path.startswith("/api/"):
            assert response.json()["error"]["code"] == "invalid_text", (where, response.text)


def test_the_route_walk_sees_every_kind_of_input() -> None:
    """A guard on the generated test: it must really reach queries, paths, JSON and forms."""
    kinds = {probe.where for probes in PROBES.values() for probe in probes}
    assert kinds == {"query", "path", "json", "form"}
    assert len(PROBES) > 60, "the route walk found too few routes"


# --- the cases of the attack pass ------------------------------------------------------------


async def test_login_email_with_nul_is_refused_not_500(env: Env) -> None:
    response = await env.client.post("/api/user/validate", json={"email": "a\u0000b@x.test", "password": "x"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_text"
    assert error["details"]["field"] == "email"

    reset = await env.client.post("/api/user/password/reset", json={"email": "a\u0000b@x.test"})
    assert reset.status_code == 400 and reset.json()["error"]["code"] == "invalid_text"


async def test_login_email_too_long_after_lower_casing_is_a_4xx(env: Env) -> None:
    # 300 characters, 600 once lower-cased ("İ".lower() is two): longer than the email column.
    email = "İ" * 300
    response = await env.client.post("/api/user/validate", json={"email": email, "password": "x" * 8})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "email"
    reset = await env.client.post("/api/user/password/reset", json={"email": email})
    assert reset.status_code == 422, reset.text


async def test_refused_login_with_an_over_long_email_is_audited_within_the_column(env: Env) -> None:
    """The dashboard's login form passes the email on as typed; the failed attempt is still
    audited, with the email cut to the column and marked as cut."""
    client = env.client_from("198.51.100.77")
    async with client:
        page = await client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        response = await client.post(
            "/login", data={"csrf_token": csrf.group(1), "email": "İ" * 300, "password": "whatever1"}
        )
    assert response.status_code == 401, response.text[:300]
    async with env.runtime.database.session() as session:
        emails = list(
            (
                await session.execute(
                    select(AuditEntry.actor_email).where(AuditEntry.action == "user.login_failed")
                )
            ).scalars()
        )
    limit = AuditEntry.__table__.c.actor_email.type.length
    assert len(emails) == 1 and emails[0] is not None
    assert len(emails[0]) == limit and emails[0].endswith("…")


async def test_nul_in_query_and_tag_path_is_refused(env: Env) -> None:
    admin = await _admin(env)
    users = await env.client.get("/api/user?q=%00", headers=admin.headers)
    assert users.status_code == 400 and users.json()["error"]["code"] == "invalid_text"
    assert users.json()["error"]["details"] == {"in": "query", "field": "q"}
    tag = await env.client.put("/api/tag/%00", json={"name": "news"}, headers=admin.headers)
    assert tag.status_code == 400 and tag.json()["error"]["code"] == "invalid_text"
    assert tag.json()["error"]["details"] == {"in": "path"}


async def test_other_control_characters_and_bad_utf8_are_refused_too(env: Env) -> None:
    admin = await _admin(env)
    for raw in ("%01", "%1B", "%7F", "%09", "%0A", "%FF", "%C3"):
        response = await env.client.get(f"/api/user?q=a{raw}", headers=admin.headers)
        assert response.status_code == 400, (raw, response.text)
        assert response.json()["error"]["code"] == "invalid_text"
    # JSON: a lone surrogate cannot be stored by either engine; a body that is not UTF-8 at all.
    surrogate = await env.client.post(
        "/api/permission",
        content=b'{"name": "x", "description": "\\ud800", "permissions": []}',
        headers=admin.headers | {"content-type": "application/json"},
    )
    assert surrogate.status_code == 400 and surrogate.json()["error"]["code"] == "invalid_text"
    latin1 = await env.client.post(
        "/api/permission",
        content='{"name": "x", "description": "caf\u00e9", "permissions": []}'.encode("latin-1"),
        headers=admin.headers | {"content-type": "application/json"},
    )
    assert latin1.status_code == 400 and latin1.json()["error"]["code"] == "invalid_text"


async def test_line_breaks_only_where_text_has_lines(env: Env) -> None:
    """A role description is multi-line text: TAB, LF and CR stay. A role name is one line."""
    admin = await _admin(env)
    created = await env.client.post(
        "/api/permission",
        json={"name": "ops", "description": "first line\r\n\tsecond", "permissions": ["stream:read"]},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["description"] == "first line\r\n\tsecond"
    for bad in ("first\x0bline", "bell\x07", "del\x7f"):
        refused = await env.client.put(
            "/api/permission/ops", json={"description": bad}, headers=admin.headers
        )
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_text", bad
    token = await env.client.post(
        "/api/bintu/token", json={"name": "ci\tbot", "expiresInDays": 1}, headers=admin.headers
    )
    assert token.status_code == 400, token.text
    assert token.json()["error"]["code"] == "invalid_text"
    assert [detail["field"] for detail in token.json()["error"]["details"]] == ["name"]


async def test_tag_list_cursor_hiding_a_nul_is_refused(env: Env) -> None:
    admin = await _admin(env)
    # "AA" is base64 for one NUL byte: a cursor this list never handed out.
    response = await env.client.get("/api/tag?cursor=AA", headers=admin.headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cursor"


async def _ingest_stream(env: Env) -> str:
    admin = await _admin(env)
    created = await env.client.post("/api/stream", json={}, headers=admin.headers)
    assert created.status_code in (200, 201), created.text
    name: str = created.json()["name"]
    return name


async def test_ingest_field_longer_than_its_column_is_refused(env: Env) -> None:
    name = await _ingest_stream(env)
    headers = {"X-Ingest-Secret": INGEST_SECRET}
    form = {"call": "publish", "name": name, "app": "live", "addr": "1" * 100, "clientid": "7"}
    response = await env.client.post("/api/ingest/publish", data=form, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert response.json()["error"]["details"]["field"] == "addr"
    as_json = await env.client.post("/api/ingest/publish", json=form, headers=headers)
    assert as_json.status_code == 400, as_json.text
    too_long = form | {"addr": "198.51.100.1", "clientid": "c" * (MAX_FIELD_LENGTH + 1)}
    clientid = await env.client.post("/api/ingest/publish", data=too_long, headers=headers)
    assert clientid.status_code == 400 and clientid.json()["error"]["details"]["field"] == "clientid"
    # The same stream with a sane address still goes live.
    fine = await env.client.post("/api/ingest/publish", data=form | {"addr": "198.51.100.1"}, headers=headers)
    assert fine.status_code == 200, fine.text


def _deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


@pytest.mark.parametrize(
    "path", ["/api/ingest/publish", "/api/user/validate", "/api/permission", "/api/v1/splay/verify"]
)
async def test_json_nested_100000_deep_is_refused(env: Env, path: str) -> None:
    admin = await _admin(env)
    headers = admin.headers | {"X-Ingest-Secret": INGEST_SECRET, "content-type": "application/json"}
    for body in (_deep(100_000), b"[" * 100_000 + b"]" * 100_000, _deep(33)):
        response = await env.client.post(path, content=body, headers=headers)
        assert response.status_code == 400, (len(body), response.text[:300])
        assert response.json()["error"]["code"] == "too_deep"
    shallow = await env.client.post(path, content=_deep(5), headers=headers)
    assert shallow.status_code != 500 and shallow.json()["error"]["code"] != "too_deep"


async def test_deep_form_free_text_and_plain_requests_pass(env: Env) -> None:
    """The edge costs nothing on requests it does not look into, and lets ordinary text through."""
    admin = await _admin(env)
    listed = await env.client.get("/api/user?q=Ünï%20code", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    body = json.dumps({"email": "ünïcode@example.com", "password": "x" * 8}, ensure_ascii=True)
    login = await env.client.post(
        "/api/user/validate", content=body, headers={"content-type": "application/json"}
    )
    assert login.status_code == 401, login.text  # escaped non-ASCII is text like any other


async def test_nul_in_a_dashboard_form_is_a_page_not_json(env: Env) -> None:
    admin = await _admin(env)
    client = env.client_from("198.51.100.78")
    client.cookies.set("sw_session", admin.token or "")
    async with client:
        response = await client.post("/roles", data={"name": NUL, "csrf_token": "x"})
        search = await client.get("/organisation/users?q=%00")
    for answer in (response, search):
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("text/html")
        assert "content-security-policy" in answer.headers


async def test_a_body_nobody_parses_is_not_looked_into(env: Env) -> None:
    """A request whose body is not looked into (no JSON, no form) passes untouched."""
    admin = await _admin(env)
    response = await env.client.post(
        "/api/permission", content=b"\x00\x01", headers=admin.headers | {"content-type": "text/plain"}
    )
    assert response.status_code in (400, 415, 422), response.text
    assert response.json()["error"]["code"] != "invalid_text"


async def test_two_content_types_are_refused_not_scanned_by_the_wrong_one(env: Env) -> None:
    """The route reads the first Content-Type; choosing the scan by the last let NUL bytes through
    (500 on PostgreSQL)."""
    body = b'{"email": "a\\u0000b@example.com", "password": "whatever it is"}'
    for second in ("text/plain", "application/x-www-form-urlencoded"):
        response = await env.client.post(
            "/api/user/validate",
            content=body,
            headers=[("content-type", "application/json"), ("content-type", second)],
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "ambiguous_content_type"
