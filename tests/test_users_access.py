"""Authorisation matrix of the user-management routes, generated from one table.

Every route of issue 3 x every kind of caller: the three predefined roles, a custom role, the API key,
an administrator of another organisation (who names this organisation's objects) and no credentials.
Each caller acts on objects of its own (fresh users, invitations, roles), so that every allowed call can
be checked for its real success status, not merely for "not refused".
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streamward.app import create_app
from streamward.audit.service import SYSTEM, record
from streamward.authn.models import PasswordReset
from streamward.authz.permissions import NANO_READ_ONLY, PREDEFINED_ROLES
from streamward.crypto import digest, new_token
from streamward.db import utcnow
from streamward.invites.models import Invitation
from streamward.roles.models import CustomRole
from streamward.users.models import Account, Membership, new_token_key
from tests.conftest import PASSWORD, CreatedOrg, Env, make_settings, password_hash
from tests.routes import api_routes
from tests.users_support import custom_role, member

# A custom role that may read, invite, edit and reset users and read the audit log, but neither
# delete users nor manage roles.
CUSTOM_ROLE = "userManager"
CUSTOM_PERMISSIONS = NANO_READ_ONLY.permissions | {
    "user:read",
    "user:invite",
    "user:edit",
    "user:token_reset",
    "audit:read",
}

_serial = itertools.count()


@dataclass
class Targets:
    """Objects of one organisation for one caller to act on."""

    user: uuid.UUID  # a nanoReadOnly member
    invite: uuid.UUID  # a pending invitation (nanoReadOnly)
    invite_token: str
    role: str  # a custom role holding only org:read, held by nobody
    reset_token: str  # a password-reset link of the nanoReadOnly member's account

    def fill(self, template: str) -> str:
        return template.format(
            user=self.user,
            invite=self.invite,
            token=self.invite_token,
            role=self.role,
            reset=self.reset_token,
        )


async def make_targets(env: Env, org: CreatedOrg) -> Targets:
    n = next(_serial)
    invite_token, reset_token = new_token("swi"), new_token("swr")
    async with env.runtime.database.session() as session:
        account = Account(email=f"target{n}@example.com", password_hash=await password_hash(PASSWORD))
        role = CustomRole(organisation_id=org.id, name=f"viewer{n}", description="", permissions=["org:read"])
        session.add_all([account, role])
        await session.flush()
        user = Membership(
            organisation_id=org.id, account_id=account.id, role="nanoReadOnly", token_key=new_token_key()
        )
        invite = Invitation(
            organisation_id=org.id,
            token_hash=digest(invite_token),
            role="nanoReadOnly",
            created_by="system",
            expires_at=utcnow() + timedelta(days=1),
        )
        reset = PasswordReset(
            account_id=account.id, token_hash=digest(reset_token), expires_at=utcnow() + timedelta(hours=1)
        )
        session.add_all([user, invite, reset])
        await session.flush()
        # Something about this user in the organisation's audit log, for the audit list's checks.
        record(session, SYSTEM, "test.seeded", organisation_id=org.id, target_type="user", target_id=user.id)
        await session.commit()
    return Targets(user.id, invite.id, invite_token, role.name, reset_token)


Body = Callable[[Targets], dict[str, Any] | None]


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # {user}, {invite}, {token}, {role}, {reset}: the caller's targets
    access: str  # a permission; "session": any member's bintu token; "public"
    ok: int  # the status of an allowed call
    body: Body = field(default=lambda _: None)
    # Another organisation's administrator naming this organisation's objects gets this status...
    other_org: int = 404
    # ...and for lists: which target the list shows to this organisation and must not show to others.
    lists: str | None = None

    @property
    def route(self) -> tuple[str, str]:
        return self.method, self.path.split("?", 1)[0]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


NEW_PASSWORD = "a brand new passphrase"

CASES = [
    Case("GET", "/api/user", "user:read", 200, other_org=200, lists="user"),
    Case("GET", "/api/user/{user}", "user:read", 200),
    Case(
        "PUT",
        "/api/user/permission",
        "user:edit",
        200,
        body=lambda t: {"userId": str(t.user), "role": t.role},
    ),
    # Another user's token key needs user:token_reset (one's own is covered in test_users.py).
    Case("PUT", "/api/user/tokenkey", "user:token_reset", 200, body=lambda t: {"userId": str(t.user)}),
    Case("DELETE", "/api/user/{user}", "user:delete", 204),
    # The role named is this organisation's: unknown in another.
    Case("POST", "/api/user/invite", "user:invite", 201, body=lambda t: {"role": t.role}, other_org=422),
    Case("GET", "/api/user/invite", "user:invite", 200, other_org=200, lists="invite"),
    Case("DELETE", "/api/user/invite/{invite}", "user:invite", 204),
    Case("POST", "/api/user/invite/{invite}/renew", "user:invite", 200),
    Case("GET", "/api/permission/list", "user:read", 200, other_org=200, lists="role"),
    Case("GET", "/api/permission?name={role}", "role:manage", 200),
    Case(
        "POST",
        "/api/permission",
        "role:manage",
        201,
        body=lambda t: {"name": f"new{t.role}", "permissions": ["org:read"]},
        other_org=201,  # creates it in the caller's own organisation
    ),
    Case("PUT", "/api/permission/{role}", "role:manage", 200, body=lambda _: {"description": "edited"}),
    Case("DELETE", "/api/permission/{role}", "role:manage", 204),
    Case("GET", "/api/audit", "audit:read", 200, other_org=200, lists="user"),
    Case("GET", "/api/audit?format=csv", "audit:read", 200, other_org=200, lists="user"),
    Case(
        "PUT",
        "/api/user/password",
        "session",
        204,
        body=lambda _: {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
        other_org=204,  # one's own password
    ),
    Case("GET", "/api/invite/{token}", "public", 200),
    Case(
        "POST",
        "/api/invite/{token}/accept",
        "public",
        200,
        body=lambda t: {"email": f"joiner-{t.invite}@example.com", "password": NEW_PASSWORD},
    ),
    Case("POST", "/api/user/password/reset", "public", 202, body=lambda _: {"email": "anyone@example.com"}),
    # bintu's path for the same request: 200, as its clients expect.
    Case("POST", "/api/user/password", "public", 200, body=lambda _: {"email": "anyone@example.com"}),
    Case(
        "POST", "/api/user/password/reset/{reset}", "public", 204, body=lambda _: {"password": NEW_PASSWORD}
    ),
]

OWN_PREFIXES = ("/api/user", "/api/invite", "/api/permission", "/api/audit")
FOUNDATION_ROUTES = {("POST", "/api/user/validate"), ("POST", "/api/user/logout")}


def _declared_rules() -> dict[tuple[str, str], tuple[str, ...]]:
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:", Path("/nonexistent")))
    return {
        (r.method, r.path.replace(":uuid}", "}")): r.rules
        for r in api_routes(app)
        if r.path.startswith(OWN_PREFIXES) and (r.method, r.path) not in FOUNDATION_ROUTES
    }


def _template(path: str) -> str:
    """The table's placeholders as the route table names them."""
    names = {"{user}": "{user_id}", "{invite}": "{invite_id}", "{role}": "{name}", "{reset}": "{token}"}
    for placeholder, name in names.items():
        path = path.replace(placeholder, name)
    return path


def test_table_covers_every_route_with_its_declared_rule() -> None:
    declared = _declared_rules()
    table = {(c.method, _template(c.route[1])): c for c in CASES}
    assert set(declared) == set(table), set(declared) ^ set(table)
    for key, rules in declared.items():
        access = table[key].access
        if access == "public":
            assert rules == ("public",), key
        elif access == "session" or key == ("PUT", "/api/user/tokenkey"):
            # Token reset: any member may renew their own; the service requires user:token_reset
            # for anyone else's (which is what the table states).
            assert rules == ("authenticated",), key
        else:
            assert rules == (f"permission:{access}",), key


@dataclass
class Caller:
    name: str
    headers: dict[str, str]
    permissions: frozenset[str]
    is_member: bool = True
    other_org: bool = False


async def _callers(env: Env, org: CreatedOrg) -> list[Caller]:
    await custom_role(env, org, CUSTOM_ROLE, set(CUSTOM_PERMISSIONS))
    callers = []
    for role in PREDEFINED_ROLES.values():
        who = await member(env, org, role.name)
        callers.append(Caller(role.name, who.headers, role.permissions))
    custom = await member(env, org, CUSTOM_ROLE)
    callers.append(Caller(CUSTOM_ROLE, custom.headers, frozenset(CUSTOM_PERMISSIONS)))
    callers.append(
        Caller("apikey", org.api_headers, PREDEFINED_ROLES["nanoAdmin"].permissions, is_member=False)
    )
    stranger = await member(env, await env.org("Elsewhere"), "nanoAdmin")
    # An administrator: whatever another organisation's caller may do, it is not here.
    callers.append(Caller("other-org", stranger.headers, frozenset(), other_org=True))
    callers.append(Caller("anonymous", {}, frozenset(), is_member=False))
    return callers


def _expected(case: Case, caller: Caller) -> int:
    if case.access == "public":
        return case.ok
    if caller.name == "anonymous":
        return 401
    if caller.other_org:
        return case.other_org
    if case.access == "session":
        return case.ok if caller.is_member else 400  # the API key has no password
    return case.ok if case.access in caller.permissions else 403


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_route_matrix(env: Env, case: Case) -> None:
    org = await env.org("Matrix")
    callers = await _callers(env, org)
    if case.access == "public":  # credentials play no part: checked without any
        callers = [c for c in callers if c.name == "anonymous"]
    for caller in callers:
        targets = await make_targets(env, org)
        response = await env.client.request(
            case.method, targets.fill(case.path), json=case.body(targets), headers=caller.headers
        )
        expected = _expected(case, caller)
        assert response.status_code == expected, (caller.name, response.text)
        if expected == 403:
            assert response.json()["error"]["code"] == "forbidden", (caller.name, response.text)
        if expected == 404:
            assert response.json()["error"]["code"] == "not_found", (caller.name, response.text)
        if case.lists and expected == 200:
            marker = str(getattr(targets, case.lists))
            # This organisation's list shows the object; another organisation's never does.
            assert (marker in response.text) != caller.other_org, (caller.name, marker)
