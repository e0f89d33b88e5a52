"""Access control of every route, generated from the route table (the machinery and the callers are in
tests/support/access.py).

* every route declares exactly one access rule (a permission, public, or a named scheme);
* every route of the JSON API has a row below stating what it demands, every dashboard route is in the
  dashboard matrix, and every other route names the test that covers its own scheme;
* each row x (each predefined role, a custom role, the API key, another organisation's administrator
  and API key, the player key alone, no credentials): the exact status and error code, 5xx never;
* each dashboard route x (each role signed in, another organisation's administrator, no session, the
  API's credentials): refused or not as its rule says, 5xx never.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from streamward.app import FRAMEWORK_PUBLIC_PATHS, create_app
from streamward.authn.mfa.passkeys import RelyingParty
from streamward.authz.permissions import ALL_PERMISSIONS
from tests.conftest import PASSWORD, CreatedOrg, Env, make_settings
from tests.support.access import NOT_FOUND, Factory, Made, Row, check_dashboard, check_row, rule_of
from tests.support.data import (
    audit_entry_about,
    configure_webhook,
    create_stream,
    custom_role,
    import_vod,
    invitation,
    password_reset,
    playback_token,
    set_state,
    webhook_delivery,
)
from tests.support.routes import all_routes, api_routes
from tests.support.webauthn_soft import SoftAuthenticator

KNOWN_SCHEMES = {
    "public",
    "authenticated",
    "enrolment",
    "dashboard-public",
    "ingest",
    "operator",
    # bintu stream reads: credentials holding stream:read, the player key, or anonymous players
    # (streams/player.py); its matrix is in test_player_access.py.
    "player",
    "token-service",
    "vod-visibility",
}


def _app() -> FastAPI:
    """An app only for reading its route table (no database is touched)."""
    return create_app(make_settings("sqlite+aiosqlite:///:memory:", Path("/nonexistent")))


APP = _app()
ROUTES = {f"{r.method} {r.path}": r for r in api_routes(APP)}


# --- objects the calls act on -----------------------------------------------------------------------


async def a_user(env: Env, org: CreatedOrg) -> Made:
    """A nanoReadOnly member, and an entry about them in the audit log (for the audit list)."""
    user = await env.member(org, "nanoReadOnly", token=False)
    await audit_entry_about(env, org, "user", user.id)
    return Made(params={"user_id": str(user.id)})


async def a_role(env: Env, org: CreatedOrg) -> Made:
    """A custom role holding only org:read, held by nobody."""
    name = f"viewer{uuid.uuid4().hex[:8]}"
    await custom_role(env, org, name, {"org:read"})
    return Made(params={"name": name})


async def a_user_and_a_role(env: Env, org: CreatedOrg) -> Made:
    user, role = await a_user(env, org), await a_role(env, org)
    return Made(params=user.params | role.params)


async def an_invite(env: Env, org: CreatedOrg) -> Made:
    invite, token = await invitation(env, org, "nanoReadOnly")
    return Made(params={"invite_id": str(invite.id), "token": token})


async def a_reset_link(env: Env, org: CreatedOrg) -> Made:
    user = await env.member(org, "nanoReadOnly", token=False)
    return Made(params={"token": await password_reset(env, user)})


def a_stream(state: str = "created") -> Factory:
    async def make(env: Env, org: CreatedOrg) -> Made:
        stream = await create_stream(env, org, tags=["matrix"])
        if state != "created":
            await set_state(env, stream["id"], state, before_lock="created" if state == "locked" else None)
        return Made(params={"stream_id": stream["id"]})

    return make


async def a_tag(env: Env, org: CreatedOrg) -> Made:
    tag = f"topic:{uuid.uuid4().hex[:8]}"
    await create_stream(env, org, tags=[tag])
    return Made(params={"name": tag})


async def a_vod_asset(env: Env, org: CreatedOrg) -> Made:
    return Made(params={"asset_id": (await import_vod(env, org))["id"]})


async def a_webhook(env: Env, org: CreatedOrg) -> Made:
    response = await env.client.put(
        "/api/organisation/webhook", json={"webhook": "https://hooks.example.com/in"}, headers=org.api_headers
    )
    assert response.status_code == 200, response.text
    return Made()


async def a_webhook_nobody_hears(env: Env, org: CreatedOrg) -> Made:
    """A webhook on a loopback address: private targets are not allowed here, so a send is refused
    before any connection is made (the test event answers that it was not delivered)."""
    await configure_webhook(env, org, "http://127.0.0.1:9/hook")
    return Made()


async def a_delivery(env: Env, org: CreatedOrg) -> Made:
    return Made(params={"delivery_id": str(await webhook_delivery(env, org))})


async def a_revocable_token(env: Env, org: CreatedOrg) -> Made:
    return Made(values={"token": await playback_token(env, org, orgawide=True, revocable=True)})


async def an_authenticator_app(env: Env, org: CreatedOrg) -> Made:
    """A pending authenticator app of a member who is no caller."""
    owner = await env.member(org, "nanoReadOnly")
    response = await env.client.post("/api/user/mfa/totp", json={}, headers=owner.headers)
    assert response.status_code == 201, response.text
    return Made(params={"factor_id": response.json()["id"]})


async def a_passkey(env: Env, org: CreatedOrg) -> Made:
    """A passkey of a member who is no caller, registered by a software authenticator."""
    owner = await env.member(org, "nanoReadOnly")
    started = await env.client.post("/api/user/mfa/passkeys/options", headers=owner.headers)
    assert started.status_code == 200, started.text
    options = started.json()
    authenticator = SoftAuthenticator(origin=RelyingParty.from_settings(env.settings).origin)
    body = {
        "challenge": options["challenge"],
        "name": "Key",
        "credential": authenticator.create(options["publicKey"]),
    }
    response = await env.client.post("/api/user/mfa/passkeys", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    return Made(params={"passkey_id": response.json()["id"]})


NEW_PASSWORD = "a brand new passphrase"

ROWS = [
    # --- the organisation, its keys and settings
    Row("GET", "/api/organisation", "org:read", 200),
    Row("GET", "/api/organisation/apikey", "apikey:read", 200),
    Row(
        "POST",
        "/api/organisation/apikey/rotate",
        "apikey:rotate",
        200,
        lambda _: {"confirm": True},
        rotates_api_key=True,
    ),
    Row("GET", "/api/organisation/playerkey", "playerkey:read", 200),
    Row("POST", "/api/organisation/playerkey/rotate", "playerkey:rotate", 200, lambda _: {"confirm": True}),
    Row("GET", "/api/organisation/player-access", "org:read", 200),
    Row("PUT", "/api/organisation/player-access", "apikey:rotate", 200, lambda _: {"tokenRequired": True}),
    Row("PUT", "/api/organisation/vod", "vod:settings", 200, lambda _: {"public": True}),
    Row("POST", "/api/organisation/playback-keys/rotate", "apikey:rotate", 200, lambda _: {}),
    Row(
        "POST",
        "/api/bintu/token",
        "apikey:read",
        201,
        lambda _: {"name": "CI", "expiresInDays": 30},
        api_key=(400, "user_required"),
    ),
    # --- the webhook and its deliveries
    Row("GET", "/api/organisation/webhook", "webhook:read", 200),
    Row(
        "PUT",
        "/api/organisation/webhook",
        "webhook:write",
        200,
        lambda _: {"webhook": "https://hooks.example.com/in", "events": ["stream.created"]},
    ),
    Row(
        "POST",
        "/api/organisation/webhook/secret/rotate",
        "webhook:write",
        200,
        lambda _: {"confirm": True},
        a_webhook,
    ),
    Row("DELETE", "/api/organisation/webhook", "webhook:write", 204, make=a_webhook),
    Row("POST", "/api/organisation/webhook/test", "webhook:write", 200, make=a_webhook_nobody_hears),
    Row(
        "GET",
        "/api/organisation/webhook/deliveries",
        "webhook:read",
        200,
        make=a_delivery,
        lists="delivery_id",
    ),
    Row(
        "POST",
        "/api/organisation/webhook/deliveries/{delivery_id}/redeliver",
        "webhook:write",
        202,
        make=a_delivery,
    ),
    # --- streams, tags, VOD
    Row("POST", "/api/stream", "stream:create", 200, lambda _: {"tags": ["news"]}),
    Row("PUT", "/api/stream/{stream_id}/tag", "tag:write", 200, lambda _: {"tags": ["sport"]}, a_stream()),
    Row(
        "PUT",
        "/api/stream/{stream_id}/push_url",
        "stream:manage",
        200,
        lambda _: {"url": "rtmp://hooks.example.com/live/key"},
        a_stream(),
    ),
    Row("PUT", "/api/stream/{stream_id}/stop", "stream:manage", 200, make=a_stream("live")),
    Row("POST", "/api/stream/{stream_id}/stop", "stream:manage", 200, make=a_stream("live")),
    Row("PUT", "/api/stream/{stream_id}/lock", "stream:manage", 200, make=a_stream()),
    Row("POST", "/api/stream/{stream_id}/lock", "stream:manage", 200, make=a_stream()),
    Row("PUT", "/api/stream/{stream_id}/unlock", "stream:manage", 200, make=a_stream("locked")),
    Row("POST", "/api/stream/{stream_id}/unlock", "stream:manage", 200, make=a_stream("locked")),
    Row("DELETE", "/api/stream/{stream_id}", "stream:manage", 200, make=a_stream()),
    Row("GET", "/api/tag", "tag:read", 200, make=a_tag, lists="name"),
    Row("PUT", "/api/tag/{name:path}", "tag:write", 200, lambda _: {"name": "renamed"}, a_tag),
    Row("DELETE", "/api/tag/{name:path}", "tag:delete", 204, make=a_tag),
    Row(
        "POST",
        "/api/vod",
        "stream:manage",
        201,
        lambda _: {"title": "Import", "durationSeconds": 12, "url": "https://cdn.example.com/i.mp4"},
    ),
    Row("DELETE", "/api/vod/{asset_id}", "stream:manage", 204, make=a_vod_asset),
    # --- the token service (its own envelope: refused credentials are 403 with code 1001)
    Row("POST", "/api/v1/splay", "playback:create", 200, lambda _: {"orgawide": True}),
    Row(
        "POST",
        "/api/v1/splay/revoke",
        "playback:revoke",
        204,
        lambda made: {"token": made.values["token"]},
        a_revocable_token,
        foreign=(400, 2012),
    ),
    # --- users, invitations, roles, the audit log
    Row("GET", "/api/user", "user:read", 200, make=a_user, lists="user_id"),
    Row("GET", "/api/user/{user_id:uuid}", "user:read", 200, make=a_user),
    Row(
        "PUT",
        "/api/user/permission",
        "user:edit",
        200,
        lambda made: {"userId": made.get("user_id"), "role": made.get("name")},
        a_user_and_a_role,
        foreign=NOT_FOUND,
    ),
    # Another user's token key needs user:token_reset (one's own is covered in test_users.py).
    Row(
        "PUT",
        "/api/user/tokenkey",
        "user:token_reset",
        200,
        lambda made: {"userId": made.get("user_id")},
        a_user,
        foreign=NOT_FOUND,
    ),
    Row("DELETE", "/api/user/{user_id:uuid}", "user:delete", 204, make=a_user),
    # The role named is this organisation's: unknown in another.
    Row(
        "POST",
        "/api/user/invite",
        "user:invite",
        201,
        lambda made: {"role": made.get("name")},
        a_role,
        foreign=(422, "unknown_role"),
    ),
    Row("GET", "/api/user/invite", "user:invite", 200, make=an_invite, lists="invite_id"),
    Row("DELETE", "/api/user/invite/{invite_id}", "user:invite", 204, make=an_invite),
    Row("POST", "/api/user/invite/{invite_id}/renew", "user:invite", 200, make=an_invite),
    Row("GET", "/api/permission/list", "user:read", 200, make=a_role, lists="name"),
    Row("GET", "/api/permission?name={name}", "role:manage", 200, make=a_role, foreign=NOT_FOUND),
    # Creates it in the caller's own organisation.
    Row(
        "POST",
        "/api/permission",
        "role:manage",
        201,
        lambda made: {"name": f"new{made.get('name')}", "permissions": ["org:read"]},
        a_role,
    ),
    Row("PUT", "/api/permission/{name}", "role:manage", 200, lambda _: {"description": "edited"}, a_role),
    Row("DELETE", "/api/permission/{name}", "role:manage", 204, make=a_role),
    Row("GET", "/api/audit", "audit:read", 200, make=a_user, lists="user_id"),
    Row("GET", "/api/audit?format=csv", "audit:read", 200, make=a_user, lists="user_id"),
    # --- one's own session and password: any member; the API key has neither
    Row(
        "PUT",
        "/api/user/password",
        "session",
        204,
        lambda _: {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
        api_key=(400, "not_a_session"),
    ),
    Row("POST", "/api/user/logout", "session", 204, api_key=(400, "not_a_session")),
    # --- second factors: one's own (the API key has none); the policy; an administrator's reset
    Row("GET", "/api/user/mfa", "session", 200, foreign=None, api_key=(400, "user_required")),
    Row(
        "POST",
        "/api/user/mfa/totp",
        "session",
        201,
        lambda _: {"name": "Phone"},
        foreign=None,
        api_key=(400, "user_required"),
    ),
    # A factor is one account's: every other caller, allowed or not (the API key has no account),
    # is told it is not there (confirming and removing one's own: test_mfa_totp.py).
    Row(
        "POST",
        "/api/user/mfa/totp/{factor_id:uuid}/confirm",
        "session",
        404,
        lambda _: {"code": "123456"},
        an_authenticator_app,
        api_key=NOT_FOUND,
    ),
    Row(
        "DELETE",
        "/api/user/mfa/totp/{factor_id:uuid}",
        "session",
        404,
        lambda _: {"password": PASSWORD},
        an_authenticator_app,
        api_key=NOT_FOUND,
    ),
    # The matrix's members have no second factor to replace the codes of (test_mfa_recovery.py).
    Row(
        "POST",
        "/api/user/mfa/recovery-codes",
        "session",
        400,
        lambda _: {"password": PASSWORD},
        foreign=None,
        api_key=(400, "user_required"),
    ),
    Row("GET", "/api/organisation/mfa-policy", "org:read", 200, foreign=None),
    # Turning it off (it is off): turned on, the callers after the first would all be enrolment
    # sessions (turning it on: test_mfa_policy.py).
    Row(
        "PUT",
        "/api/organisation/mfa-policy",
        "org:mfa_policy",
        200,
        lambda _: {"required": False},
        foreign=None,
    ),
    Row("DELETE", "/api/user/{user_id:uuid}/mfa", "user:edit", 204, make=a_user),
    # Passkeys: starting one's own registration; renaming or removing one names a passkey, which is
    # one account's: every other caller is told it is not there (one's own, and registering:
    # test_mfa_passkeys.py).
    Row(
        "POST", "/api/user/mfa/passkeys/options", "session", 200, foreign=None, api_key=(400, "user_required")
    ),
    Row(
        "PATCH",
        "/api/user/mfa/passkeys/{passkey_id:uuid}",
        "session",
        404,
        lambda _: {"name": "Renamed"},
        a_passkey,
        api_key=NOT_FOUND,
    ),
    Row(
        "DELETE",
        "/api/user/mfa/passkeys/{passkey_id:uuid}",
        "session",
        404,
        lambda _: {"password": PASSWORD},
        a_passkey,
        api_key=NOT_FOUND,
    ),
    Row("POST", "/api/user/passkey/options", "public", 200),
    # --- public: invitations and password resets
    Row("GET", "/api/invite/{token}", "public", 200, make=an_invite),
    Row(
        "POST",
        "/api/invite/{token}/accept",
        "public",
        200,
        lambda made: {"email": f"joiner-{made.get('invite_id')}@example.com", "password": NEW_PASSWORD},
        an_invite,
    ),
    Row("POST", "/api/user/password/reset", "public", 202, lambda _: {"email": "anyone@example.com"}),
    # bintu's path for the same request: 200, as its clients expect.
    Row("POST", "/api/user/password", "public", 200, lambda _: {"email": "anyone@example.com"}),
    Row(
        "POST",
        "/api/user/password/reset/{token}",
        "public",
        204,
        lambda _: {"password": NEW_PASSWORD},
        a_reset_link,
    ),
]

# Routes whose scheme has a matrix of its own, in the test named here.
ELSEWHERE = {
    "POST /api/user/validate": "test_auth.py: logins, refusals, throttles",
    "POST /api/user/validate/mfa": "test_mfa_login.py: challenges, answers, throttle",
    "POST /api/user/mfa/passkeys": "test_mfa_passkeys.py: the caller's own challenge, every kind of caller",
    "POST /api/user/validate/passkey": "test_mfa_passkeys.py: passwordless logins, refusals, throttle",
    "POST /api/apikey": "test_bintu_clients_tokens.py: bintu's API-key login",
    "GET /api/stream": "test_player_access.py: credentials, player key, anonymous",
    "GET /api/stream/public": "test_player_access.py: credentials, player key, anonymous",
    "GET /api/stream/{stream_id}": "test_player_access.py: credentials, player key, anonymous",
    "GET /api/stream/{stream_id}/group": "test_player_access.py: credentials, player key, anonymous",
    "GET /api/vod": "test_vod.py: public vs private, strangers",
    "GET /api/vod/{asset_id}": "test_vod.py: public vs private, strangers",
    "POST /api/v1/splay/verify": "test_playback.py: public, every attack",
    "GET /.well-known/jwks.json": "test_playback.py: public key set",
    "GET /api/operator/organisation": "test_operator.py: operator token",
    "GET /api/operator/organisation/{organisation_id}": "test_operator.py: operator token",
    "PATCH /api/operator/organisation/{organisation_id}": "test_operator.py: operator token",
    "GET /metrics": "test_metrics.py: operator token",
    "POST /api/ingest/publish": "test_ingest.py: the media server's shared secret",
    "POST /api/ingest/update_publish": "test_ingest.py: the media server's shared secret",
    "POST /api/ingest/publish_done": "test_ingest.py: the media server's shared secret",
    "GET /healthz": "test_health.py: public",
    "GET /readyz": "test_health.py: public",
    "GET /api/docs": "test_openapi_spec.py: public",
    "GET /api/docs/assets/{name}": "test_openapi_spec.py: public",
    # The dashboard's public pages: sign-in, invitations, password resets.
    "GET /login": "test_csrf_binding.py, test_dash_account.py: the sign-in form",
    "POST /login": "test_csrf_binding.py, test_limits_redis.py: sign-in, its CSRF token and throttle",
    "GET /invite/{token}": "test_sec_invite_enumeration.py: the same page for everyone",
    "POST /invite/{token}": "test_sec_invite_enumeration.py, test_sec_public_throttle.py",
    "GET /password/reset": "test_dash_account.py: the reset request form",
    "POST /password/reset": "test_csrf_binding.py, test_dash_account.py: the reset request",
    "GET /password/reset/{token}": "test_sec_public_throttle.py, test_dash_account.py",
    "POST /password/reset/{token}": "test_sec_public_throttle.py, test_csrf_binding.py",
    "GET /login/mfa": "test_dash_mfa.py: the second step, from the login's cookie",
    "POST /login/mfa": "test_dash_mfa.py: codes, recovery codes, wrong answers, CSRF",
    "POST /login/passkey/options": "test_dash_mfa.py, browser/test_mfa_browser.py: passwordless",
    "POST /login/passkey": "test_dash_mfa.py, browser/test_mfa_browser.py: passwordless",
}


def test_every_route_declares_exactly_one_access_rule() -> None:
    unclassified, ambiguous = [], []
    routes = api_routes(APP)
    assert len(routes) >= 3, "the route table looks empty: is the walk still right for this FastAPI?"
    for route in routes:
        if not route.rules:
            unclassified.append(f"{route.method} {route.path}")
        elif len(route.rules) > 1:
            ambiguous.append(f"{route.method} {route.path}: {route.rules}")
        for rule in route.rules:
            if rule.startswith("permission:"):
                assert rule.removeprefix("permission:") in ALL_PERMISSIONS
            elif rule.startswith("dashboard:"):
                assert rule.removeprefix("dashboard:") in ALL_PERMISSIONS | {"signed-in", "enrolment"}
            else:
                assert rule in KNOWN_SCHEMES, f"unknown access rule {rule!r} on {route.path}"
    assert not unclassified, f"routes without an access rule: {unclassified}"
    assert not ambiguous, f"routes with several access rules: {ambiguous}"
    # Framework routes that are not APIRoutes must be listed as public in one place.
    others = {r.path for r in all_routes(APP) if isinstance(r, Route) and not isinstance(r, APIRoute)}
    assert others <= FRAMEWORK_PUBLIC_PATHS, others - FRAMEWORK_PUBLIC_PATHS


DASHBOARD = [route for route in ROUTES.values() if rule_of(route).startswith("dashboard:")]


def test_every_route_has_a_row_the_dashboard_matrix_or_a_matrix_elsewhere() -> None:
    rowed = {row.route for row in ROWS}
    paged = {f"{route.method} {route.path}" for route in DASHBOARD}
    assert rowed <= set(ROUTES), f"rows without a route: {rowed - set(ROUTES)}"
    assert not rowed & set(ELSEWHERE), rowed & set(ELSEWHERE)
    assert set(ROUTES) == rowed | paged | set(ELSEWHERE), (
        f"routes nobody tests for access: {set(ROUTES) - rowed - paged - set(ELSEWHERE)}"
    )
    # Each row states what its route demands; the declared rule must say the same.
    for row in ROWS:
        rule = rule_of(ROUTES[row.route])
        if rule.startswith("permission:"):
            assert row.access == rule.removeprefix("permission:"), (row.id, rule)
        elif rule == "public":
            assert row.access == "public", (row.id, rule)
        elif rule in ("authenticated", "enrolment"):
            # Any member's own session (with "enrolment", also one limited to setting up a second
            # factor); a permission the service checks when acting on someone else (token reset:
            # one's own needs none, see test_users.py).
            assert row.access == "session" or row.access in ALL_PERMISSIONS, (row.id, rule)
        else:
            assert rule == "token-service" and row.access in ALL_PERMISSIONS, (row.id, rule)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
async def test_route_matrix(env: Env, row: Row) -> None:
    await check_row(env, row, ROUTES[row.route])


async def test_dashboard_matrix(env: Env) -> None:
    await check_dashboard(env, DASHBOARD)
