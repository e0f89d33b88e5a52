"""The audit log: login attempts, the read API (filters, keyset pages, CSV export), and no secrets."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from streamward.audit.models import AuditEntry
from streamward.authn.models import BintuSession, PasswordReset
from streamward.db import utcnow
from streamward.events.models import OutboxEvent
from streamward.invites.models import Invitation
from streamward.users.models import Account, Membership
from tests.conftest import PASSWORD, CreatedOrg, Env, Member
from tests.support.data import audit_entries
from tests.support.mail import mailed_reset_tokens


async def test_every_login_attempt_leaves_an_entry(env: Env) -> None:
    first, second = await env.org(), await env.org()
    user = await env.member(first, "nanoUser", email="both@example.com", token=False)
    elsewhere = await env.member(second, "nanoReadOnly", email="both@example.com", token=False)
    ok = await env.client.post(
        "/api/user/validate",
        json={"email": user.email, "password": PASSWORD, "organisation": str(first.id)},
    )
    assert ok.status_code == 200
    wrong = await env.client.post("/api/user/validate", json={"email": user.email, "password": "wrong guess"})
    unknown = await env.client.post(
        "/api/user/validate", json={"email": "who@example.com", "password": "guess"}
    )
    assert wrong.status_code == unknown.status_code == 401

    entries = await audit_entries(env, action=("user.login", "user.login_failed"))
    summary = [(e.action, e.organisation_id, e.target_id, e.actor, e.actor_email, e.after) for e in entries]
    assert summary[0] == ("user.login", first.id, str(user.id), f"user:{user.id}", user.email, None)
    failed = {"reason": "invalid_credentials"}
    # A failure against a known account: in each of its organisations' logs (in either order).
    assert sorted(summary[1:3], key=str) == sorted(
        [
            ("user.login_failed", first.id, str(user.id), "anonymous", user.email, failed),
            ("user.login_failed", second.id, str(elsewhere.id), "anonymous", user.email, failed),
        ],
        key=str,
    )
    # An unknown email: outside any organisation.
    assert summary[3:] == [("user.login_failed", None, None, "anonymous", "who@example.com", failed)]
    assert {e.client_address for e in entries} == {"203.0.113.10"}


async def test_throttled_and_ambiguous_logins_are_recorded_too(env: Env) -> None:
    env.runtime.login_throttle.per_address.capacity = 1
    first, second = await env.org(), await env.org()
    await env.member(first, "nanoUser", email="multi@example.com", token=False)
    await env.member(second, "nanoUser", email="multi@example.com", token=False)
    ambiguous = await env.client.post(
        "/api/user/validate", json={"email": "multi@example.com", "password": PASSWORD}
    )
    assert ambiguous.status_code == 409
    throttled = await env.client.post(
        "/api/user/validate", json={"email": "multi@example.com", "password": PASSWORD}
    )
    assert throttled.status_code == 429
    reasons = [
        (e.organisation_id is None, e.after) for e in await audit_entries(env, action="user.login_failed")
    ]
    assert reasons == [
        (False, {"reason": "organisation_required"}),
        (False, {"reason": "organisation_required"}),
        (True, {"reason": "rate_limited"}),
    ]


async def _busy_organisation(env: Env) -> tuple[CreatedOrg, Member, Member]:
    """An organisation with a few audited changes, and another organisation with its own."""
    org = await env.org()
    admin = await env.member(org, email="chief@example.com")
    user = await env.member(org, "nanoUser")
    await env.client.put(
        "/api/user/permission", json={"userId": str(user.id), "role": "nanoReadOnly"}, headers=admin.headers
    )
    await env.client.put("/api/user/tokenkey", json={"userId": str(user.id)}, headers=admin.headers)
    await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=org.api_headers)
    other = await env.org()
    other_admin = await env.member(other)
    await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=other_admin.headers)
    return org, admin, user


async def test_audit_api_lists_newest_first_with_filters_and_pages(env: Env) -> None:
    _, admin, user = await _busy_organisation(env)

    async def actions(query: str = "") -> list[str]:
        response = await env.client.get(f"/api/audit?{query}", headers=admin.headers)
        assert response.status_code == 200, response.text
        return [item["action"] for item in response.json()["items"]]

    assert await actions() == ["invite.created", "user.token_reset", "user.role_changed"]
    assert await actions("action=user.token_reset") == ["user.token_reset"]
    assert await actions("actor=apikey") == ["invite.created"]
    assert await actions(f"actor=user:{admin.id}") == ["user.token_reset", "user.role_changed"]
    assert await actions("actor=CHIEF@example.com") == ["user.token_reset", "user.role_changed"]
    assert await actions(f"target={user.id}") == ["user.token_reset", "user.role_changed"]
    assert await actions("targetType=invite") == ["invite.created"]

    items = (await env.client.get("/api/audit", headers=admin.headers)).json()["items"]
    item = items[-1]
    assert set(item) == {
        "id",
        "createdAt",
        "actor",
        "actorEmail",
        "action",
        "targetType",
        "targetId",
        "before",
        "after",
        "clientAddress",
        "requestId",
    }
    assert (item["before"], item["after"]) == ({"role": "nanoUser"}, {"role": "nanoReadOnly"})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["createdAt"])
    # Time range: from inclusive, to exclusive; a time without offset is UTC.
    middle = items[1]["createdAt"]
    assert await actions(f"from={middle}") == ["invite.created", "user.token_reset"]
    assert await actions(f"to={middle}") == ["user.role_changed"]
    later = (utcnow() + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert await actions(f"from={later}") == []
    bad = await env.client.get("/api/audit?from=yesterday", headers=admin.headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_time"

    seen, cursor = [], None
    while True:
        page = (
            await env.client.get(
                "/api/audit?limit=2" + (f"&cursor={cursor}" if cursor else ""),
                headers=admin.headers,
            )
        ).json()
        seen += [i["id"] for i in page["items"]]
        if not (cursor := page["nextCursor"]):
            break
    assert seen == [i["id"] for i in items]


async def test_csv_export_has_every_matching_entry_and_defuses_formulas(env: Env) -> None:
    org, admin, _ = await _busy_organisation(env)
    sneaky = await env.member(org, "nanoUser", email="=cmd@example.com", token=False)
    await env.login(sneaky)
    response = await env.client.get("/api/audit?format=csv", headers=admin.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    listed = (await env.client.get("/api/audit?limit=200", headers=admin.headers)).json()["items"]
    assert [row["id"] for row in rows] == [item["id"] for item in listed]
    assert [row["action"] for row in rows][:2] == ["user.login", "invite.created"]
    assert rows[0]["actorEmail"] == "'=cmd@example.com"  # a spreadsheet must not run it
    change = next(row for row in rows if row["action"] == "user.role_changed")
    assert json.loads(change["before"]) == {"role": "nanoUser"}
    assert change["createdAt"].endswith("Z")
    filtered = await env.client.get("/api/audit?format=csv&action=user.token_reset", headers=admin.headers)
    assert [row["action"] for row in csv.DictReader(io.StringIO(filtered.text))] == ["user.token_reset"]


async def test_csv_export_streams_more_than_one_batch(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamward.audit.service as audit_service

    monkeypatch.setattr(audit_service, "EXPORT_BATCH", 2)
    _, admin, _ = await _busy_organisation(env)
    response = await env.client.get("/api/audit?format=csv", headers=admin.headers)
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["action"] for row in rows] == ["invite.created", "user.token_reset", "user.role_changed"]


async def test_no_secret_reaches_the_audit_log_or_the_events(env: Env) -> None:
    org = await env.org()
    # A real login: its audit entry must hold no secret either.
    admin = await env.member(org, "nanoAdmin", email="admin@example.com", login=True)
    secrets: set[str] = {PASSWORD, org.api_key, admin.token or ""}

    invite = (
        await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=admin.headers)
    ).json()
    renewed = (await env.client.post(f"/api/user/invite/{invite['id']}/renew", headers=admin.headers)).json()
    joined = (
        await env.client.post(
            f"/api/invite/{renewed['token']}/accept",
            json={"email": "joiner@example.com", "password": "joiner passphrase"},
        )
    ).json()
    secrets |= {invite["token"], renewed["token"], joined["token"], "joiner passphrase"}
    joiner = {"X-BINTU-TOKEN": joined["token"]}
    await env.client.put(
        "/api/user/password",
        json={"currentPassword": "joiner passphrase", "newPassword": "second passphrase"},
        headers=joiner,
    )
    await env.client.post("/api/user/password/reset", json={"email": "joiner@example.com"})
    [reset_token] = mailed_reset_tokens(env)
    await env.client.post(f"/api/user/password/reset/{reset_token}", json={"password": "third passphrase"})
    reset = (
        await env.client.put(
            "/api/user/tokenkey", json={"userId": joined["user"]["id"]}, headers=admin.headers
        )
    ).json()
    await env.client.post(
        "/api/user/validate", json={"email": "admin@example.com", "password": "wrong password"}
    )
    secrets |= {"second passphrase", "third passphrase", reset_token, reset["tokenKey"]}

    async with env.runtime.database.session(write=False) as session:
        for column in (
            Account.password_hash,
            Membership.token_key,
            BintuSession.token_hash,
            Invitation.token_hash,
            PasswordReset.token_hash,
        ):
            secrets |= set((await session.execute(select(column))).scalars())
        entries = (await session.execute(select(AuditEntry))).scalars().all()
        payloads = (await session.execute(select(OutboxEvent.payload))).scalars().all()
    assert {e.action for e in entries} >= {
        "user.login",
        "user.login_failed",
        "invite.created",
        "invite.renewed",
        "user.joined",
        "user.password_changed",
        "user.password_reset_requested",
        "user.password_reset",
        "user.token_reset",
    }
    written = json.dumps(
        [
            [
                e.actor,
                e.actor_email,
                e.action,
                e.target_type,
                e.target_id,
                e.before,
                e.after,
                e.client_address,
            ]
            for e in entries
        ]
        + list(payloads)
    )
    leaked = sorted(s for s in secrets if s and s in written)
    assert not leaked, leaked


async def test_a_flood_of_throttled_logins_leaves_one_audit_entry(env: Env) -> None:
    env.runtime.login_throttle.per_address.capacity = 1
    await env.client.post("/api/user/validate", json={"email": "x@example.com", "password": "wrong-password"})
    for _ in range(5):
        throttled = await env.client.post(
            "/api/user/validate", json={"email": "x@example.com", "password": "wrong-password"}
        )
        assert throttled.status_code == 429
    reasons = [e.after for e in await audit_entries(env, action="user.login_failed")]
    assert reasons.count({"reason": "rate_limited"}) == 1
