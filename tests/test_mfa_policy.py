"""The organisation's second-factor policy: who may set it, and what it does to a member without a
second factor (an enrolment session: every JSON route refuses it but setting up a factor and logout,
checked against the app's route table), to the API key and to named bintu tokens."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import event

from streamward.authz.permissions import NANO_ADMIN, PREDEFINED_ROLES
from tests.conftest import Env, Member
from tests.support.access import CUSTOM_PERMISSIONS
from tests.support.data import ALL_PACKAGES, audit_entries, custom_role
from tests.support.mfa import Clock, enrol_app, error_code, first_step, second_step
from tests.support.routes import api_routes


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


async def _require(env: Env, headers: dict[str, str], required: bool = True) -> None:
    response = await env.client.put(
        "/api/organisation/mfa-policy", json={"required": required}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"required": required}


async def test_only_holders_of_org_mfa_policy_set_the_policy(env: Env) -> None:
    org, other = await env.org(), await env.org()
    # Everything a user manager has, and every permission but the policy's.
    almost = frozenset(NANO_ADMIN.permissions - {"org:mfa_policy"})
    await custom_role(env, org, "almostAdmin", almost)
    await custom_role(env, org, "userManager", CUSTOM_PERMISSIONS)
    admin = await env.member(org)
    refused = [
        await env.member(org, role) for role in ("nanoUser", "nanoReadOnly", "almostAdmin", "userManager")
    ]
    assert [name for name, role in PREDEFINED_ROLES.items() if "org:mfa_policy" in role.permissions] == [
        "nanoAdmin"
    ]

    for member in refused:
        response = await env.client.put(
            "/api/organisation/mfa-policy", json={"required": True}, headers=member.headers
        )
        assert (response.status_code, error_code(response)) == (403, "forbidden"), member.membership.role
        assert response.json()["error"]["details"] == {"permission": "org:mfa_policy"}
        # Anyone who may see the organisation sees the policy.
        read = await env.client.get("/api/organisation/mfa-policy", headers=member.headers)
        assert read.json() == {"required": False}
    anonymous = await env.client.put("/api/organisation/mfa-policy", json={"required": True})
    assert (anonymous.status_code, error_code(anonymous)) == (401, "unauthenticated")
    invalid = await env.client.put(
        "/api/organisation/mfa-policy", json={"required": "maybe"}, headers=admin.headers
    )
    assert (invalid.status_code, error_code(invalid)) == (422, "validation_error")

    await _require(env, admin.headers)
    # From now on the admin, who has no second factor, reaches enrolment only; the API key holds
    # every permission and is not held back.
    held = await env.client.put(
        "/api/organisation/mfa-policy", json={"required": False}, headers=admin.headers
    )
    assert (held.status_code, error_code(held)) == (403, "mfa_enrolment_required")
    await _require(env, org.api_headers)  # unchanged: no second entry
    await _require(env, org.api_headers, required=False)
    changes = await audit_entries(env, org=org, action="organisation.mfa_policy_changed")
    assert [(e.before, e.after) for e in changes] == [
        ({"mfaRequired": False}, {"mfaRequired": True}),
        ({"mfaRequired": True}, {"mfaRequired": False}),
    ]
    assert changes[0].actor == f"user:{admin.id}" and changes[1].actor == "apikey"
    # Another organisation's policy did not move.
    assert (await env.client.get("/api/organisation/mfa-policy", headers=other.api_headers)).json() == {
        "required": False
    }


# Schemes that take no bintu token at all (their own secrets), and the dashboard's pages.
_NOT_MEMBER_ROUTES = ("operator", "ingest")
_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


def _gated_routes(env: Env) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(method, path, rule) of every JSON route an enrolment session must be refused on, and
    (method, path) of the enrolment routes it may reach; from the app's route table."""
    gated, enrolment = [], []
    for route in api_routes(env.client._transport.app):  # type: ignore[attr-defined]
        [rule] = route.rules
        if rule == "public" or rule.startswith("dashboard") or rule in _NOT_MEMBER_ROUTES:
            continue
        if rule == "enrolment":
            enrolment.append((route.method, route.path))
        else:
            gated.append((route.method, route.path, rule))
    return gated, enrolment


async def _call(env: Env, member: Member, method: str, path: str) -> tuple[int, object]:
    url = _PARAMETER.sub(lambda _: str(uuid.uuid4()), path)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    response = await env.client.request(method, url, json=body, headers=member.headers)
    payload = (
        response.json() if response.headers.get("content-type", "").startswith("application/json") else None
    )
    error = payload.get("error") if isinstance(payload, dict) else None
    # The token service's own envelope names the reason (its code is a number).
    code = (error.get("reason") or error.get("code")) if isinstance(error, dict) else None
    return response.status_code, code


async def test_an_enrolment_session_reaches_only_enrolment_and_logout(env: Env, clock: Clock) -> None:
    org = await env.org()
    admin = await env.member(org)
    await _require(env, admin.headers)
    gated, enrolment = _gated_routes(env)
    assert (
        len(gated) > 40
        and ("GET", "/api/user/mfa") in enrolment
        and ("POST", "/api/user/logout") in enrolment
    )

    failures = []
    for method, path, rule in gated:
        status, code = await _call(env, admin, method, path)
        if (status, code) != (403, "mfa_enrolment_required"):
            failures.append(f"{method} {path} ({rule}): {status} {code}")
    for method, path in enrolment:
        if path == "/api/user/logout":
            continue  # last: it ends the session
        status, code = await _call(env, admin, method, path)
        if status in (401, 403) or status >= 500:
            failures.append(f"{method} {path} (enrolment): {status} {code}")
    assert not failures, "\n".join(failures)

    # What the session sees of itself, and logout.
    status = (await env.client.get("/api/user/mfa", headers=admin.headers)).json()
    assert status["enrolled"] is False and status["required"] is True
    assert (await env.client.post("/api/user/logout", headers=admin.headers)).status_code == 204
    assert (await env.client.get("/api/user/mfa", headers=admin.headers)).status_code == 401


async def test_setting_up_a_factor_turns_the_same_session_into_a_full_one(env: Env, clock: Clock) -> None:
    org = await env.org()
    admin = await env.member(org)
    member = await env.member(org, "nanoUser")
    await _require(env, admin.headers)
    # A password login still answers a token: the enrolment session.
    token = await env.login(member)
    session = {"X-BINTU-TOKEN": token}
    refused = await env.client.get("/api/organisation", headers=session)
    assert (refused.status_code, error_code(refused)) == (403, "mfa_enrolment_required")
    named = await env.client.post(
        "/api/bintu/token", json={"name": "CI", "expiresInDays": 30}, headers=session
    )
    assert (named.status_code, error_code(named)) == (403, "mfa_enrolment_required")

    await enrol_app(env, member, clock, headers=session)

    assert (await env.client.get("/api/organisation", headers=session)).status_code == 200
    listed = await env.client.get("/api/user", headers=session)
    flags = {item["email"]: item["mfa"] for item in listed.json()["items"]}
    assert flags == {
        member.email: {"totp": True, "passkey": False},
        admin.email: {"totp": False, "passkey": False},
    }
    # The admin without a factor is still held at enrolment; the policy off, everyone is through.
    assert (
        error_code(await env.client.get("/api/organisation", headers=admin.headers))
        == "mfa_enrolment_required"
    )
    await _require(env, org.api_headers, required=False)
    assert (await env.client.get("/api/organisation", headers=admin.headers)).status_code == 200


async def test_named_bintu_tokens_only_for_members_who_satisfy_the_policy(env: Env, clock: Clock) -> None:
    org = await env.org()
    admin = await env.member(org)
    await _require(env, admin.headers)
    body = {"name": "CI", "expiresInDays": 30}
    refused = await env.client.post("/api/bintu/token", json=body, headers=admin.headers)
    assert (refused.status_code, error_code(refused)) == (403, "mfa_enrolment_required")
    await enrol_app(env, admin, clock)
    issued = await env.client.post("/api/bintu/token", json=body, headers=admin.headers)
    assert issued.status_code == 201, issued.text
    named = {"X-BINTU-TOKEN": issued.json()["token"]}
    assert (await env.client.get("/api/organisation", headers=named)).status_code == 200
    # Removing the factor ends the account's other sessions, the named token among them.
    [app] = (await env.client.get("/api/user/mfa", headers=admin.headers)).json()["totp"]
    removed = await env.client.request(
        "DELETE", f"/api/user/mfa/totp/{app['id']}", json={"password": admin.password}, headers=admin.headers
    )
    assert removed.status_code == 204, removed.text
    assert (await env.client.get("/api/organisation", headers=named)).status_code == 401
    again = await env.client.post("/api/bintu/token", json=body, headers=admin.headers)
    assert (again.status_code, error_code(again)) == (403, "mfa_enrolment_required")


async def test_the_api_key_and_playback_tokens_are_not_affected(env: Env) -> None:
    org = await env.org(packages=ALL_PACKAGES)
    admin = await env.member(org)
    issued = await env.client.post("/api/v1/splay", json={"orgawide": True}, headers=org.api_headers)
    assert issued.status_code == 200, issued.text
    await _require(env, admin.headers)
    assert (await env.client.get("/api/organisation", headers=org.api_headers)).status_code == 200
    assert (await env.client.get("/api/user", headers=org.api_headers)).status_code == 200
    again = await env.client.post("/api/v1/splay", json={"orgawide": True}, headers=org.api_headers)
    assert again.status_code == 200, again.text
    token = issued.json()["data"]["token"]
    checked = await env.client.post("/api/v1/splay/verify", json={"token": token})
    assert checked.status_code == 200, checked.text
    # The API key has no second factors of its own.
    mine = await env.client.get("/api/user/mfa", headers=org.api_headers)
    assert (mine.status_code, error_code(mine)) == (400, "user_required")


async def test_the_users_list_reads_every_rows_factors_in_one_query(env: Env, clock: Clock) -> None:
    org = await env.org()
    admin = await env.member(org)
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    async def listing() -> int:
        statements.clear()
        response = await env.client.get("/api/user?limit=100", headers=org.api_headers)
        assert response.status_code == 200, response.text
        return len(statements)

    engine = env.runtime.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        few = await listing()
        for _ in range(6):
            member = await env.member(org, "nanoReadOnly")
            await enrol_app(env, member, clock)
        many = await listing()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert many == few
    listed = (await env.client.get("/api/user?limit=100", headers=admin.headers)).json()["items"]
    assert sum(item["mfa"]["totp"] for item in listed) == 6


async def test_a_login_limited_to_enrolment_carries_no_api_key(env: Env, clock: Clock) -> None:
    """The API key holds every permission and knows nothing of the policy: a login that may only set
    up a factor must not hand it out (an administrator's login does, once they have one)."""
    org = await env.org()
    admin = await env.member(org)
    await _require(env, admin.headers)
    limited = await env.client.post(
        "/api/user/validate", json={"email": admin.email, "password": admin.password}
    )
    assert limited.status_code == 200, limited.text
    assert "apiKey" not in limited.json()
    session = {"X-BINTU-TOKEN": limited.json()["token"]}
    app = await enrol_app(env, admin, clock, headers=session)
    details = await first_step(env, admin)
    complete = await second_step(env, details["challenge"], code=app.code(clock))
    assert complete.status_code == 200 and complete.json()["apiKey"], complete.text
