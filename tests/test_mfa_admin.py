"""An administrator's reset of a member's second factors (a lost phone): ``user:edit``, never on a
member whose role holds more than the caller's, never across organisations; every factor and
recovery code goes, every session of the account ends, audited, and the member is told by mail."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from streamward.authn.mfa.models import RecoveryCode, TotpFactor
from streamward.users.models import Account
from tests.conftest import Env
from tests.support.access import CUSTOM_PERMISSIONS, CUSTOM_ROLE
from tests.support.data import audit_entries, count, custom_role
from tests.support.mail import filed_mails
from tests.support.mfa import Clock, enrol_app, error_code, password_body


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


async def test_an_admin_resets_a_members_factors(env: Env, clock: Clock) -> None:
    org = await env.org("Home")
    admin = await env.member(org)
    member = await env.member(org, "nanoUser", email="lost-phone@example.com")
    await enrol_app(env, member, clock)
    await enrol_app(env, member, clock, name="Tablet")
    second_tab, third_tab = await env.issue_token(member), await env.issue_token(member)

    own = await env.client.delete(f"/api/user/{admin.id}/mfa", headers=admin.headers)
    assert (own.status_code, error_code(own)) == (400, "own_factors")
    response = await env.client.delete(f"/api/user/{member.id}/mfa", headers=admin.headers)
    assert response.status_code == 204, response.text

    # Every session of the account ends; the admin's own stays.
    for token in (member.token, second_tab, third_tab):
        assert (
            await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": token})
        ).status_code == 401
    assert (await env.client.get("/api/organisation", headers=admin.headers)).status_code == 200
    assert await count(env, TotpFactor, account_id=member.account.id) == 0
    assert await count(env, RecoveryCode, account_id=member.account.id) == 0
    async with env.runtime.database.session(write=False) as session:
        assert not await session.scalar(select(Account.mfa_enrolled).where(Account.id == member.account.id))
    # The password alone signs in again; the users list shows no factor.
    assert (await env.client.post("/api/user/validate", json=password_body(member))).status_code == 200
    listed = (await env.client.get("/api/user", headers=admin.headers)).json()["items"]
    assert {item["email"]: item["mfa"] for item in listed}[member.email] == {"totp": False, "passkey": False}

    [entry] = await audit_entries(env, org=org, action="user.mfa_reset")
    assert entry.actor == f"user:{admin.id}" and entry.target_id == str(member.id)
    assert entry.after == {"totp": 2, "passkeys": 0, "sessionsEnded": 3}
    [mail] = [m for m in filed_mails(env) if "second factors were removed" in str(m["Subject"])]
    assert mail["To"] == member.email and "'Home'" in mail.get_content()


async def test_the_reset_is_refused_above_ones_own_role_and_without_user_edit(env: Env, clock: Clock) -> None:
    org = await env.org()
    await custom_role(env, org, CUSTOM_ROLE, CUSTOM_PERMISSIONS)  # user:edit, far from everything
    manager = await env.member(org, CUSTOM_ROLE)
    operator = await env.member(org, "nanoUser")
    admin = await env.member(org)
    observer = await env.member(org, "nanoReadOnly")
    await enrol_app(env, admin, clock)
    await enrol_app(env, observer, clock)

    above = await env.client.delete(f"/api/user/{admin.id}/mfa", headers=manager.headers)
    assert (above.status_code, error_code(above)) == (403, "escalation")
    lacking = await env.client.delete(f"/api/user/{observer.id}/mfa", headers=operator.headers)
    assert (lacking.status_code, error_code(lacking)) == (403, "forbidden")
    assert lacking.json()["error"]["details"] == {"permission": "user:edit"}
    assert await count(env, TotpFactor, account_id=admin.account.id) == 1
    assert await count(env, TotpFactor, account_id=observer.account.id) == 1
    assert (await env.client.get("/api/organisation", headers=admin.headers)).status_code == 200
    assert await audit_entries(env, org=org, action="user.mfa_reset") == []

    # Within their own rights, the manager may; so may the API key.
    assert (
        await env.client.delete(f"/api/user/{observer.id}/mfa", headers=manager.headers)
    ).status_code == 204
    assert await count(env, TotpFactor, account_id=observer.account.id) == 0
    assert (await env.client.delete(f"/api/user/{admin.id}/mfa", headers=org.api_headers)).status_code == 204
    assert await count(env, TotpFactor, account_id=admin.account.id) == 0


async def test_another_organisations_member_is_not_found(env: Env, clock: Clock) -> None:
    org, theirs = await env.org(), await env.org()
    admin = await env.member(org)
    stranger = await env.member(theirs, "nanoReadOnly")
    await enrol_app(env, stranger, clock)
    for headers in (admin.headers, org.api_headers):
        response = await env.client.delete(f"/api/user/{stranger.id}/mfa", headers=headers)
        assert (response.status_code, error_code(response)) == (404, "not_found")
    assert await count(env, TotpFactor, account_id=stranger.account.id) == 1
    assert (await env.client.get("/api/organisation", headers=stranger.headers)).status_code == 200
    # The stranger was told of the app they added, and of nothing else.
    told = [str(m["Subject"]) for m in filed_mails(env) if m["To"] == stranger.email]
    assert told == ["An authenticator app was added to your Streamward account"]


async def test_no_reset_of_a_person_whose_factors_guard_another_organisation(env: Env, clock: Clock) -> None:
    """The factors are the person's: an administrator of one organisation must not strip what
    protects the person's membership of another (say, where they are an administrator)."""
    home, elsewhere = await env.org("Home"), await env.org("Elsewhere")
    admin = await env.member(home)
    member = await env.member(home, "nanoReadOnly", email="two-orgs@example.com")
    there = await env.member(elsewhere, "nanoAdmin", email="two-orgs@example.com")
    await enrol_app(env, member, clock)

    refused = await env.client.delete(f"/api/user/{member.id}/mfa", headers=admin.headers)
    assert (refused.status_code, error_code(refused)) == (403, "mfa_reset_not_allowed")
    assert await count(env, TotpFactor, account_id=member.account.id) == 1
    # The membership elsewhere still asks for the second factor.
    step = await env.client.post("/api/user/validate", json=password_body(there))
    assert (step.status_code, error_code(step)) == (401, "mfa_required")
