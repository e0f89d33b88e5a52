"""The access-control matrix: every route x every kind of caller, built from the route table and, for
the JSON API, one row per route (tests/test_access_matrix.py holds the rows).

The callers: each predefined role, a custom role, the organisation's API key, an administrator and
the API key of another organisation, the player key alone, and no credentials. What each may do
follows from the row, whose stated access the route's declared rule must match: a caller holding
the permission gets the row's success status, one lacking it 403 ``forbidden``; no credentials and
the player key alone get 401 ``unauthenticated`` (the token service answers in its own envelope:
403 with code 1001); another organisation naming this organisation's object gets the row's
``foreign`` answer (404 ``not_found`` unless the row says otherwise), and the object is still there
for its owner afterwards.

Each call that is expected to succeed acts on a fresh object, so side effects cannot leak between
callers; refused calls share one probe object (a refusal must leave it untouched). Besides the real
call, every caller also calls the route with ids that exist nowhere and an empty body: the access
check comes first (the refused are refused the same way), and the allowed are never refused. No call
of the matrix may answer 5xx.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from streamward.authz.permissions import ADMIN_ROLE, PREDEFINED_ROLES
from tests.conftest import CreatedOrg, Env, Member
from tests.support.data import ALL_PACKAGES, custom_role, use_fake_dns
from tests.support.pages import browser, csrf_of, signed_in
from tests.support.routes import RouteInfo

# A custom role that may read, invite, edit and reset users and read the audit log, but neither
# delete users nor manage roles, nor change anything else.
CUSTOM_ROLE = "userManager"
CUSTOM_PERMISSIONS = PREDEFINED_ROLES["nanoReadOnly"].permissions | {
    "user:read",
    "user:invite",
    "user:edit",
    "user:token_reset",
    "audit:read",
}

# What a call answers: a status, or a status and the error code of the body.
Outcome = int | tuple[int, str | int]


@dataclass(frozen=True)
class Made:
    """What a factory made: path (and query) parameters, and values a body or a list check may use."""

    params: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return str(self.params[name] if name in self.params else self.values[name])


Factory = Callable[[Env, CreatedOrg], Awaitable[Made]]


async def nothing(env: Env, org: CreatedOrg) -> Made:
    return Made()


_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")
NOT_FOUND: Outcome = (404, "not_found")


@dataclass(frozen=True)
class Row:
    """One route of the matrix (a route may have several rows, e.g. with another query)."""

    method: str
    path: str  # as in the route table; a query may follow, with {parameters} of its own
    # The permission the call needs; "session": any member's bintu token; "public": nothing.
    access: str
    ok: int  # the status of an allowed call
    body: Callable[[Made], dict[str, Any]] | None = None
    make: Factory = nothing  # makes the object the call acts on, in the organisation it is given
    # Another organisation's caller naming this organisation's object gets this; None: the route acts
    # on the caller's own organisation, so another organisation's caller succeeds there.
    foreign: Outcome | Literal["object"] | None = "object"
    api_key: Outcome | None = None  # the API key's documented refusal, instead of success
    lists: str | None = None  # a value the answer lists for this organisation and no other
    rotates_api_key: bool = False  # a success answers the caller's organisation's new API key

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def route(self) -> str:
        """The route-table key: method and path without the query."""
        return f"{self.method} {self.path.split('?', 1)[0]}"

    @property
    def foreign_outcome(self) -> Outcome | None:
        if self.foreign == "object":  # the default: an object named in the path is not found
            return NOT_FOUND if _PARAMETER.search(self.path) else None
        return self.foreign

    def url(self, made: Made) -> str:
        return _PARAMETER.sub(lambda m: made.get(m.group(1)), self.path)

    def sample_url(self) -> str:
        """The path with every parameter an id that exists nowhere."""
        return _PARAMETER.sub(lambda _: str(uuid.uuid4()), self.path)


@dataclass
class Caller:
    name: str
    kind: Literal["member", "api-key", "other-org", "player-key", "anonymous"]
    permissions: frozenset[str]
    org: CreatedOrg | None = None  # the organisation the credentials belong to
    member: Member | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self.member is not None:
            return self.member.headers
        if self.kind == "player-key" and self.org is not None:
            return {"X-BINTU-PLAYERKEY": self.org.organisation.player_key}
        # Read at call time: an API key rotated by an earlier call is the one to use.
        return self.org.api_headers if self.org is not None else {}


async def callers(env: Env, mine: CreatedOrg, theirs: CreatedOrg) -> list[Caller]:
    await custom_role(env, mine, CUSTOM_ROLE, CUSTOM_PERMISSIONS)
    # The player key grants the player's stream reads and nothing else: alone it is no credential
    # (first, before any call of the matrix rotates it).
    found = [Caller("player key", "player-key", frozenset(), mine)]
    found += [
        Caller(role.name, "member", role.permissions, mine, await env.member(mine, role.name))
        for role in PREDEFINED_ROLES.values()
    ]
    found.append(
        Caller(
            CUSTOM_ROLE, "member", frozenset(CUSTOM_PERMISSIONS), mine, await env.member(mine, CUSTOM_ROLE)
        )
    )
    admin = PREDEFINED_ROLES[ADMIN_ROLE].permissions
    found.append(Caller("API key", "api-key", admin, mine))
    # An administrator: whatever another organisation's caller may do, it is not here.
    found.append(Caller("their admin", "other-org", admin, theirs, await env.member(theirs, ADMIN_ROLE)))
    found.append(Caller("their API key", "other-org", admin, theirs))
    found.append(Caller("anonymous", "anonymous", frozenset()))
    return found


def rule_of(route: RouteInfo) -> str:
    [rule] = route.rules
    return rule


def expected(row: Row, rule: str, caller: Caller) -> Outcome:
    token_service = rule == "token-service"
    if rule == "public":
        return row.ok
    if caller.kind in ("anonymous", "player-key"):
        return (403, 1001) if token_service else (401, "unauthenticated")
    if caller.kind == "other-org" and row.foreign_outcome is not None:
        return row.foreign_outcome
    if caller.member is None and row.api_key is not None:
        return row.api_key
    if row.access == "session" or row.access in caller.permissions:
        return row.ok
    return (403, 1001) if token_service else (403, "forbidden")


def _refused_by_access(outcome: Outcome) -> bool:
    return isinstance(outcome, tuple) and outcome[0] in (401, 403)


def _succeeds(outcome: Outcome) -> bool:
    return isinstance(outcome, int) and 200 <= outcome < 300


def _error_code(response: httpx.Response) -> str | int | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _matches(response: httpx.Response, outcome: Outcome) -> bool:
    if isinstance(outcome, int):
        return response.status_code == outcome
    return (response.status_code, _error_code(response)) == outcome


class Matrix:
    """Runs one row against every caller and collects every mismatch, so that one failure report
    shows the whole row."""

    def __init__(self, env: Env, row: Row, route: RouteInfo) -> None:
        self.env, self.row, self.rule = env, row, rule_of(route)
        self.failures: list[str] = []

    async def request(self, caller: Caller, url: str, body: dict[str, Any] | None) -> httpx.Response:
        response = await self.env.client.request(self.row.method, url, json=body, headers=caller.headers)
        if response.status_code >= 500:
            self.failures.append(f"{caller.name}: {response.status_code} on {url}: {response.text[:200]}")
        if self.row.rotates_api_key and response.status_code == 200 and caller.org is not None:
            caller.org.api_key = response.json()["apiKey"]
        return response

    def check(self, caller: Caller, what: str, response: httpx.Response, outcome: Outcome) -> bool:
        if _matches(response, outcome):
            return True
        self.failures.append(
            f"{caller.name} ({what}): expected {outcome}, got {response.status_code} {response.text[:200]}"
        )
        return False

    async def run(self, mine: CreatedOrg, theirs: CreatedOrg, everyone: list[Caller]) -> None:
        row = self.row
        if self.rule == "public":  # credentials play no part: checked without any
            everyone = [c for c in everyone if c.kind == "anonymous"]
        foreign = row.foreign_outcome if self.rule != "public" else None
        probe = await row.make(self.env, mine)
        for caller in everyone:
            outcome = expected(row, self.rule, caller)
            if caller.kind == "other-org" and foreign is not None:
                made = probe  # this organisation's object, named by another organisation
            elif _succeeds(outcome):
                made = await row.make(self.env, theirs if caller.kind == "other-org" else mine)
            else:
                made = probe
            response = await self.request(caller, row.url(made), row.body(made) if row.body else None)
            if self.check(caller, "its object", response, outcome) and row.lists and outcome == 200:
                # This organisation's list shows its object; another organisation's never does.
                stranger = caller.kind == "other-org"
                marker = probe.get(row.lists) if stranger else made.get(row.lists)
                if (marker in response.text) == stranger:
                    verb = "shows" if stranger else "lacks"
                    self.failures.append(f"{caller.name}: the list {verb} {marker}")
            if self.rule != "public":
                await self.unknown_ids(caller, outcome)
        if foreign is not None:
            # The probe was there all along, untouched by every refusal: its owner can still act on it.
            owner = next(c for c in everyone if c.kind == "api-key")
            response = await self.request(owner, row.url(probe), row.body(probe) if row.body else None)
            self.check(owner, "the probe, after the refusals", response, expected(row, self.rule, owner))

    async def unknown_ids(self, caller: Caller, outcome: Outcome) -> None:
        """Ids that exist nowhere and an empty body: refusals by access come before any lookup or
        validation; an allowed caller is never refused."""
        body = {} if self.row.method in {"POST", "PUT", "PATCH"} else None
        if self.row.body is None and not _PARAMETER.search(self.row.path):
            return  # the same call again (and it may have ended the session, like a logout)
        response = await self.request(caller, self.row.sample_url(), body)
        # A permission the service checks (not the route's rule) is checked after the lookup.
        own_session = self.rule in ("authenticated", "enrolment")
        by_rule = caller.kind in ("anonymous", "player-key") or not own_session
        if _refused_by_access(outcome) and caller.kind != "other-org":
            if by_rule:
                self.check(caller, "unknown ids", response, outcome)
        elif response.status_code in (401, 403):
            self.failures.append(f"{caller.name} (unknown ids): refused: {response.text[:200]}")


async def check_row(env: Env, row: Row, route: RouteInfo) -> None:
    use_fake_dns(env)
    mine = await env.org("Mine", packages=ALL_PACKAGES)
    theirs = await env.org("Theirs", packages=ALL_PACKAGES)
    matrix = Matrix(env, row, route)
    await matrix.run(mine, theirs, await callers(env, mine, theirs))
    assert not matrix.failures, f"{row.id}:\n" + "\n".join(matrix.failures)


# --- the dashboard ----------------------------------------------------------------------------------


async def check_dashboard(env: Env, routes: list[RouteInfo]) -> None:
    """Every dashboard route, with ids that exist nowhere and an empty form (plus the session's CSRF
    token): without a session (or with the API's credentials, which the dashboard does not take)
    -> 303 to the login page; a role lacking the permission -> the 403 page saying ``forbidden``;
    a role holding it, and another organisation's administrator -> not refused; 5xx never.
    One session per caller serves every route, so sign-out comes last."""
    mine = await env.org("Mine", packages=ALL_PACKAGES)
    theirs = await env.org("Theirs", packages=ALL_PACKAGES)
    everyone = await callers(env, mine, theirs)
    members = [c for c in everyone if c.member is not None]
    browsers = {c.name: await signed_in(env, c.member) for c in members if c.member is not None}
    tokens = {
        name: csrf_of((await client.get("/account/password")).text) for name, client in browsers.items()
    }
    outsider_headers = {
        "anonymous": {},
        "API key": mine.api_headers,
        "bintu token": {"X-BINTU-TOKEN": members[0].headers["X-BINTU-TOKEN"]},
        "player key": {"X-BINTU-PLAYERKEY": mine.organisation.player_key},
    }
    outsiders = {name: browser(env) for name in outsider_headers}
    failures: list[str] = []
    for route in sorted(routes, key=lambda r: r.path == "/logout"):
        url = _PARAMETER.sub(lambda _: str(uuid.uuid4()), route.path)
        permission = rule_of(route).removeprefix("dashboard:")
        for name, client in outsiders.items():
            response = await client.request(route.method, url, headers=outsider_headers[name])
            location = response.headers.get("location", "")
            if response.status_code != 303 or not location.startswith("/login?next="):
                failures.append(f"{route.method} {route.path}: {name}: {response.status_code} {location}")
        for caller in members:
            client = browsers[caller.name]
            if route.method == "GET":
                response = await client.get(url)
            else:
                response = await client.post(url, data={"csrf_token": tokens[caller.name]})
            allowed = permission in ("signed-in", "enrolment") or permission in caller.permissions
            refused = response.status_code == 403 and "<code>forbidden</code>" in response.text
            if (
                response.status_code >= 500
                or allowed == refused
                or (not allowed and response.status_code != 403)
            ):
                failures.append(
                    f"{route.method} {route.path}: {caller.name} ({'allowed' if allowed else 'lacking'}): "
                    f"{response.status_code} {response.text[:160]}"
                )
    for client in [*browsers.values(), *outsiders.values()]:
        await client.aclose()
    assert not failures, "\n".join(failures)
