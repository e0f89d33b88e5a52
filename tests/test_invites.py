"""Invitations: creation (token, link, no escalation), listing, revoke, renew, the public look-up and
acceptance (new account, existing account, bound email, the one error for every unusable link)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from streamward.authz.permissions import NANO_READ_ONLY, NANO_USER, ordered
from streamward.crypto import digest
from streamward.db import utcnow
from streamward.invites.models import Invitation
from streamward.users.models import Membership
from tests.conftest import Env
from tests.support.data import audit_entries, count, custom_role, events, invitation

BASE_URL = "https://streamward.example.org"
JOIN_PASSWORD = "joining passphrase 42"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"public_base_url": BASE_URL + "/"}


async def test_create_returns_the_token_and_link_once_and_stores_only_the_sha256(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    response = await env.client.post(
        "/api/user/invite",
        json={"role": "nanoUser", "email": "New.Person@Example.com", "expiresInDays": 3},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    token = body["token"]
    # "swi_" + 256 random bits in URL-safe base64 (43 characters): far above the 128-bit floor.
    assert token.startswith("swi_") and len(token) == 4 + 43
    assert body["url"] == f"{BASE_URL}/invite/{token}"
    assert body["email"] == "new.person@example.com"
    assert body["role"] == {"name": "nanoUser", "title": "Operator"}
    assert body["status"] == "pending"
    assert body["createdBy"] == f"user:{admin.id}"
    expires = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(days=3) - timedelta(minutes=1) < expires - utcnow() <= timedelta(days=3)

    async with env.runtime.database.session(write=False) as session:
        stored = (await session.execute(select(Invitation))).scalar_one()
    assert stored.token_hash == digest(token)
    assert token not in repr([getattr(stored, c.key) for c in Invitation.__table__.columns])
    listed = (await env.client.get("/api/user/invite", headers=admin.headers)).json()["items"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert "token" not in listed[0] and token not in str(listed)
    [entry] = await audit_entries(env, action="invite.created")
    assert entry.target_id == body["id"] and token not in str(entry.after)
    [event] = await events(env, type="user.invited")
    assert event.payload["inviteId"] == body["id"] and event.payload["role"] == "nanoUser"
    assert token not in str(event.payload) and stored.token_hash not in str(event.payload)


async def test_expiry_is_one_to_thirty_days_seven_by_default(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    for days in (0, 31, -1):
        response = await env.client.post(
            "/api/user/invite", json={"role": "nanoUser", "expiresInDays": days}, headers=admin.headers
        )
        assert response.status_code == 422, days
    default = (
        await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=admin.headers)
    ).json()
    expires = datetime.fromisoformat(default["expiresAt"].replace("Z", "+00:00"))
    assert timedelta(days=7) - timedelta(minutes=1) < expires - utcnow() <= timedelta(days=7)


async def test_invite_refusals_unknown_role_escalation_and_existing_member(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    await custom_role(env, org, "recruiter", set(NANO_READ_ONLY.permissions | {"user:invite"}))
    recruiter = await env.member(org, "recruiter")
    observer = await env.member(org, "nanoReadOnly", email="observer@example.com")

    unknown = await env.client.post("/api/user/invite", json={"role": "wizard"}, headers=admin.headers)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "unknown_role")
    for role in ("nanoAdmin", "nanoUser"):
        escalation = await env.client.post("/api/user/invite", json={"role": role}, headers=recruiter.headers)
        assert escalation.status_code == 403, role
        assert escalation.json()["error"]["code"] == "escalation"
    allowed = await env.client.post(
        "/api/user/invite", json={"role": "nanoReadOnly"}, headers=recruiter.headers
    )
    assert allowed.status_code == 201
    # Renewing an administrator's invitation hands the role out again: refused to the recruiter too.
    admin_invite = (
        await env.client.post("/api/user/invite", json={"role": "nanoAdmin"}, headers=admin.headers)
    ).json()
    renew = await env.client.post(f"/api/user/invite/{admin_invite['id']}/renew", headers=recruiter.headers)
    assert (renew.status_code, renew.json()["error"]["code"]) == (403, "escalation")

    member_email = await env.client.post(
        "/api/user/invite", json={"role": "nanoUser", "email": observer.email}, headers=admin.headers
    )
    assert (member_email.status_code, member_email.json()["error"]["code"]) == (409, "already_member")


async def test_public_lookup_shows_only_organisation_name_role_and_whether_an_email_is_bound(
    env: Env,
) -> None:
    org = await env.org("Acme Streaming")
    _, open_token = await invitation(env, org, "nanoUser")
    _, bound_token = await invitation(env, org, "nanoReadOnly", email="someone@example.com")
    open_view = await env.client.get(f"/api/invite/{open_token}")
    assert open_view.status_code == 200
    assert open_view.json() == {
        "organisation": {"name": "Acme Streaming"},
        "role": {"title": "Operator", "permissions": ordered(NANO_USER.permissions)},
        "emailBound": False,
    }
    bound_view = (await env.client.get(f"/api/invite/{bound_token}")).json()
    assert bound_view["emailBound"] is True
    assert "someone" not in str(bound_view)


async def test_accept_creates_an_account_and_returns_a_bintu_token(env: Env) -> None:
    org = await env.org("Acme")
    admin = await env.member(org)
    invite, token = await invitation(env, org, "nanoUser")
    response = await env.client.post(
        f"/api/invite/{token}/accept", json={"email": "Joiner@Example.com", "password": JOIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["organisation"] == {"id": str(org.id), "name": "Acme"}
    assert body["role"] == {"name": "nanoUser", "title": "Operator"}
    assert body["user"]["email"] == "joiner@example.com"
    assert "apiKey" not in body
    joined = {"X-BINTU-TOKEN": body["token"]}
    assert (await env.client.get("/api/user", headers=joined)).status_code == 200  # nanoUser reads users
    login = await env.client.post(
        "/api/user/validate", json={"email": "joiner@example.com", "password": JOIN_PASSWORD}
    )
    assert login.status_code == 200

    [listed] = (await env.client.get("/api/user/invite", headers=admin.headers)).json()["items"]
    assert (listed["status"], listed["acceptedBy"]) == ("accepted", body["user"]["id"])
    [entry] = await audit_entries(env, action="user.joined")
    assert (entry.organisation_id, entry.actor, entry.target_id) == (
        org.id,
        f"user:{body['user']['id']}",
        body["user"]["id"],
    )
    assert entry.after == {"email": "joiner@example.com", "role": "nanoUser", "inviteId": str(invite.id)}
    [event] = await events(env, type="user.joined")
    assert event.payload["userId"] == body["user"]["id"]


async def test_accept_with_an_existing_accounts_token_adds_a_membership(env: Env) -> None:
    home, other = await env.org("Home"), await env.org("Other")
    person = await env.member(home, "nanoUser", email="person@example.com")
    _, token = await invitation(env, other, "nanoReadOnly")
    response = await env.client.post(f"/api/invite/{token}/accept", headers=person.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["organisation"]["name"] == "Other"
    assert body["user"]["email"] == "person@example.com"
    assert body["user"]["id"] != str(person.id)
    organisation = await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": body["token"]})
    assert organisation.json()["name"] == "Other"
    # The old token still belongs to the first organisation.
    assert (await env.client.get("/api/organisation", headers=person.headers)).json()["name"] == "Home"
    assert await count(env, Membership, account_id=person.account.id) == 2

    bad = await env.client.post(
        f"/api/invite/{(await invitation(env, other))[1]}/accept", headers={"X-BINTU-TOKEN": "swt_nope"}
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (401, "unauthenticated")


async def test_an_email_bound_invitation_is_accepted_only_by_that_email(env: Env) -> None:
    org, elsewhere = await env.org(), await env.org()
    stranger = await env.member(elsewhere, "nanoUser", email="stranger@example.com")
    _, token = await invitation(env, org, "nanoUser", email="bound@example.com")
    wrong_new = await env.client.post(
        f"/api/invite/{token}/accept", json={"email": "other@example.com", "password": JOIN_PASSWORD}
    )
    assert (wrong_new.status_code, wrong_new.json()["error"]["code"]) == (403, "invite_email_mismatch")
    wrong_existing = await env.client.post(f"/api/invite/{token}/accept", headers=stranger.headers)
    assert (wrong_existing.status_code, wrong_existing.json()["error"]["code"]) == (
        403,
        "invite_email_mismatch",
    )
    assert (await env.client.get(f"/api/invite/{token}")).status_code == 200  # still usable
    right = await env.client.post(
        f"/api/invite/{token}/accept", json={"email": "Bound@Example.com", "password": JOIN_PASSWORD}
    )
    assert right.status_code == 200, right.text


async def test_existing_member_or_account_gets_a_clear_error_and_the_invitation_survives(env: Env) -> None:
    org = await env.org()
    insider = await env.member(org, "nanoReadOnly", email="insider@example.com")
    _, token = await invitation(env, org, "nanoUser")
    again = await env.client.post(f"/api/invite/{token}/accept", headers=insider.headers)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_member")
    # An existing account's email with another password is a failed sign-in, not "account exists".
    wrong = await env.client.post(
        f"/api/invite/{token}/accept", json={"email": "insider@example.com", "password": JOIN_PASSWORD}
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_credentials")
    # With its own password it signs in, and is told it is a member already.
    member_again = await env.client.post(
        f"/api/invite/{token}/accept", json={"email": "insider@example.com", "password": insider.password}
    )
    assert (member_again.status_code, member_again.json()["error"]["code"]) == (409, "already_member")
    assert (await env.client.get(f"/api/invite/{token}")).status_code == 200
    assert await count(env, Membership, organisation_id=org.id) == 1


async def test_unknown_expired_revoked_and_used_invitations_get_the_same_answer(env: Env) -> None:
    org = await env.org()
    _, expired = await invitation(env, org, expires_in=timedelta(seconds=-1))
    _, revoked = await invitation(env, org, revoked_at=utcnow())
    _, used = await invitation(env, org, accepted_at=utcnow())
    unknown = "swi_" + "A" * 43
    answers = set()
    for token in (unknown, expired, revoked, used):
        preview = await env.client.get(f"/api/invite/{token}")
        accept = await env.client.post(
            f"/api/invite/{token}/accept", json={"email": "late@example.com", "password": JOIN_PASSWORD}
        )
        answers.add((preview.status_code, preview.text))
        answers.add((accept.status_code, accept.text))
    [(status, text)] = answers
    assert status == 404 and '"invite_invalid"' in text


async def test_accept_input_errors_leave_the_invitation_usable(env: Env) -> None:
    org = await env.org()
    outsider = await env.member(await env.org(), "nanoUser")
    _, token = await invitation(env, org)
    cases: list[tuple[dict[str, Any] | None, dict[str, str], int, str]] = [
        (None, {}, 400, "credentials_required"),
        ({"email": "a@example.com"}, {}, 400, "credentials_required"),
        ({"email": "a@example.com", "password": "short"}, {}, 400, "weak_password"),
        ({"email": "a@example.com", "password": "password123"}, {}, 400, "weak_password"),
        ({"email": "a@example.com", "password": "p" * 129}, {}, 400, "weak_password"),
        ({"email": "not an email", "password": JOIN_PASSWORD}, {}, 422, "validation_error"),
        (
            {"email": "a@example.com", "password": JOIN_PASSWORD},
            outsider.headers,
            400,
            "ambiguous_credentials",
        ),
    ]
    for body, headers, status, code in cases:
        response = await env.client.post(f"/api/invite/{token}/accept", json=body, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    assert (await env.client.get(f"/api/invite/{token}")).status_code == 200


async def test_list_shows_status_and_filters_and_pages(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    pending, _ = await invitation(env, org, "nanoUser", email="pending@example.com")
    expired, _ = await invitation(env, org, "nanoReadOnly", expires_in=timedelta(seconds=-1))
    revoked, _ = await invitation(env, org, "nanoUser", revoked_at=utcnow())
    accepted, _ = await invitation(env, org, "nanoReadOnly", accepted_at=utcnow())
    await invitation(env, await env.org(), "nanoUser")  # another organisation's

    async def ids(query: str = "") -> list[str]:
        response = await env.client.get(f"/api/user/invite?{query}", headers=admin.headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    every = [str(i.id) for i in (accepted, revoked, expired, pending)]
    assert await ids() == every
    statuses = {
        item["id"]: item["status"]
        for item in (await env.client.get("/api/user/invite", headers=admin.headers)).json()["items"]
    }
    assert [statuses[str(i.id)] for i in (pending, expired, revoked, accepted)] == [
        "pending",
        "expired",
        "revoked",
        "accepted",
    ]
    for status, invite in [
        ("pending", pending),
        ("expired", expired),
        ("revoked", revoked),
        ("accepted", accepted),
    ]:
        assert await ids(f"status={status}") == [str(invite.id)]
    assert await ids("role=nanoReadOnly") == [str(accepted.id), str(expired.id)]
    assert await ids("q=PEND") == [str(pending.id)]
    assert (await env.client.get("/api/user/invite?status=lost", headers=admin.headers)).status_code == 422

    first = (await env.client.get("/api/user/invite?limit=3", headers=admin.headers)).json()
    second = (
        await env.client.get(f"/api/user/invite?limit=3&cursor={first['nextCursor']}", headers=admin.headers)
    ).json()
    assert [i["id"] for i in first["items"] + second["items"]] == every and second["nextCursor"] is None


async def test_revoke_stops_the_link(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    invite, token = await invitation(env, org)
    assert (
        await env.client.delete(f"/api/user/invite/{invite.id}", headers=admin.headers)
    ).status_code == 204
    assert (await env.client.get(f"/api/invite/{token}")).status_code == 404
    assert (
        await env.client.delete(f"/api/user/invite/{invite.id}", headers=admin.headers)
    ).status_code == 204
    used, _ = await invitation(env, org, accepted_at=utcnow())
    late = await env.client.delete(f"/api/user/invite/{used.id}", headers=admin.headers)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "invite_not_pending")
    foreign, _ = await invitation(env, await env.org())
    assert (
        await env.client.delete(f"/api/user/invite/{foreign.id}", headers=admin.headers)
    ).status_code == 404

    [entry] = await audit_entries(env, action="invite.revoked")
    assert (entry.target_id, entry.after) == (str(invite.id), {"status": "revoked"})
    [event] = await events(env, type="invite.revoked")
    assert event.payload["inviteId"] == str(invite.id)


async def test_renew_issues_a_fresh_token_and_the_old_one_stops(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    invite, old_token = await invitation(env, org, "nanoUser", expires_in=timedelta(seconds=-1))
    response = await env.client.post(
        f"/api/user/invite/{invite.id}/renew", json={"expiresInDays": 2}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == str(invite.id) and body["status"] == "pending"
    assert body["token"] != old_token and body["url"] == f"{BASE_URL}/invite/{body['token']}"
    assert (await env.client.get(f"/api/invite/{old_token}")).status_code == 404
    assert (await env.client.get(f"/api/invite/{body['token']}")).status_code == 200
    [entry] = await audit_entries(env, action="invite.renewed")
    assert entry.target_id == str(invite.id) and body["token"] not in str(entry.after)

    used, _ = await invitation(env, org, accepted_at=utcnow())
    refused = await env.client.post(f"/api/user/invite/{used.id}/renew", headers=admin.headers)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "invite_not_pending")
