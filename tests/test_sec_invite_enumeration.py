"""Accepting an invitation must not tell whether an email has an account.

Any organisation's admin can mint invitations; the acceptance used to answer 409 ``account_exists``
for a registered email, so anyone holding an invitation could probe the platform's accounts. Now an
email and a password either create the account or sign in with the existing one: the same 200 for
both, a wrong password is a failed login (same answer, same per-account budget), and each branch
costs one argon2 run.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from streamward import passwords
from streamward.audit.models import AuditEntry
from streamward.invites import acceptance as invites_acceptance
from streamward.users.models import Account, Membership
from tests.conftest import Env
from tests.support.data import audit_entries, count, invitation
from tests.support.pages import browser, csrf_of, signed_in

PASSWORD = "correct horse battery staple"  # the conftest members' password
KNOWN = "known@example.com"
UNKNOWN = "nobody-yet@example.com"
WRONG = "not the right passphrase"
GUIDANCE = "If you already have an account, use its password, or"


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys and types, not the values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


async def _accept(env: Env, token: str, email: str, password: str) -> httpx.Response:
    response = await env.client.post(
        f"/api/invite/{token}/accept", json={"email": email, "password": password}
    )
    assert response.status_code != 500, response.text
    return response


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"login_failures_per_account": 3, "login_failures_per_account_window_seconds": 300}


async def test_known_and_unknown_emails_join_with_the_same_answer(env: Env) -> None:
    home, org = await env.org(), await env.org()
    known = await env.member(home, "nanoUser", email=KNOWN, token=False)
    _, first = await invitation(env, org, "nanoReadOnly")
    _, second = await invitation(env, org, "nanoReadOnly")

    with_account = await _accept(env, first, KNOWN, PASSWORD)
    without_account = await _accept(env, second, UNKNOWN, PASSWORD)
    assert with_account.status_code == without_account.status_code == 200, with_account.text
    assert _shape(with_account.json()) == _shape(without_account.json())
    for response, email in ((with_account, KNOWN), (without_account, UNKNOWN)):
        body = response.json()
        assert body["organisation"] == {"id": str(org.id), "name": org.organisation.name}
        assert body["role"]["name"] == "nanoReadOnly" and body["user"]["email"] == email
        # The token is a session of the new membership.
        reply = await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": body["token"]})
        assert reply.status_code == 200 and reply.json()["id"] == str(org.id)

    # The existing account joined as itself: no second account, its password unchanged.
    assert await count(env, Account, email=KNOWN) == 1
    assert await count(env, Membership, account_id=known.account.id) == 2
    login = await env.client.post(
        "/api/user/validate", json={"email": KNOWN, "password": PASSWORD, "organisation": str(home.id)}
    )
    assert login.status_code == 200, login.text


async def test_a_wrong_password_for_a_known_email_answers_like_a_wrong_login(env: Env) -> None:
    home, org = await env.org(), await env.org()
    known = await env.member(home, "nanoUser", email=KNOWN, token=False)
    _, token = await invitation(env, org)

    refused = await _accept(env, token, KNOWN, WRONG)
    wrong_login = await env.client.post("/api/user/validate", json={"email": KNOWN, "password": WRONG})
    assert (refused.status_code, refused.json()) == (wrong_login.status_code, wrong_login.json())
    assert refused.json()["error"]["code"] == "invalid_credentials"
    # Nothing joined, the invitation still works, and the account's organisation sees the attempt.
    assert await count(env, Membership, organisation_id=org.id) == 0
    assert (await env.client.get(f"/api/invite/{token}")).status_code == 200
    failed = await audit_entries(
        env, AuditEntry.organisation_id == home.id, AuditEntry.action == "user.login_failed"
    )
    assert [entry.after for entry in failed] == [
        {"reason": "invalid_credentials", "via": "invitation"},
        {"reason": "invalid_credentials"},
    ]
    assert str(failed[0].target_id) == str(known.id)


async def test_no_answer_says_account_exists(env: Env) -> None:
    home, org = await env.org(), await env.org()
    await env.member(home, "nanoUser", email=KNOWN, token=False)
    insider = await env.member(org, "nanoUser", email="insider@example.com", token=False)
    _, token = await invitation(env, org)
    _, bound = await invitation(env, org, email=KNOWN)
    answers = [
        await _accept(env, token, KNOWN, WRONG),
        await _accept(env, token, insider.email, WRONG),
        await _accept(env, token, insider.email, PASSWORD),
        await _accept(env, bound, "someone-else@example.com", PASSWORD),
        await _accept(env, token, KNOWN, "short"),
        await _accept(env, bound, KNOWN, PASSWORD),
    ]
    assert [(r.status_code, r.json().get("error", {}).get("code")) for r in answers] == [
        (401, "invalid_credentials"),
        (401, "invalid_credentials"),
        (409, "already_member"),  # only once the password proved the account
        (403, "invite_email_mismatch"),
        (400, "weak_password"),
        (200, None),  # an invitation bound to an existing account's email: it joins with its password
    ]
    assert all("account_exists" not in r.text for r in answers)


async def test_refusals_before_the_password_check_do_not_depend_on_the_email(env: Env) -> None:
    home, org = await env.org(), await env.org()
    await env.member(home, "nanoUser", email=KNOWN, token=False)
    _, token = await invitation(env, org)
    _, bound = await invitation(env, org, email="bound@example.com")
    for password, bound_token in (("short", token), (PASSWORD, bound)):
        known = await _accept(env, bound_token, KNOWN, password)
        unknown = await _accept(env, bound_token, UNKNOWN, password)
        assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
        assert known.status_code in (400, 403)


async def test_wrong_passwords_through_invitations_spend_the_login_failure_budget(env: Env) -> None:
    home, org = await env.org(), await env.org()
    await env.member(home, "nanoUser", email=KNOWN, token=False)
    _, token = await invitation(env, org)
    for _ in range(3):  # login_failures_per_account, from this module's settings
        assert (await _accept(env, token, KNOWN, WRONG)).status_code == 401
    # The budget is the account's: acceptance and login are both refused now, right password or not.
    throttled = await _accept(env, token, KNOWN, PASSWORD)
    assert (throttled.status_code, throttled.json()["error"]["code"]) == (429, "rate_limited")
    assert int(throttled.headers["Retry-After"]) >= 1
    login = await env.client_from("198.51.100.77").post(
        "/api/user/validate", json={"email": KNOWN, "password": PASSWORD}
    )
    assert (login.status_code, login.json()["error"]["code"]) == (429, "rate_limited")


async def test_failed_logins_throttle_acceptance_for_any_email_alike(env: Env) -> None:
    """The per-account budget is keyed by the email as typed, account or not (as for login), so a
    throttled acceptance does not tell either."""
    home, org = await env.org(), await env.org()
    await env.member(home, "nanoUser", email=KNOWN, token=False)
    _, token = await invitation(env, org)
    for email in (KNOWN, UNKNOWN):
        for _ in range(3):
            wrong = await env.client.post("/api/user/validate", json={"email": email, "password": WRONG})
            assert wrong.status_code == 401
    known, unknown = await _accept(env, token, KNOWN, PASSWORD), await _accept(env, token, UNKNOWN, PASSWORD)
    assert known.status_code == unknown.status_code == 429
    assert known.json()["error"]["code"] == unknown.json()["error"]["code"] == "rate_limited"
    assert await count(env, Account, email=UNKNOWN) == 0


async def test_every_branch_costs_one_argon2_run(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    home, org = await env.org(), await env.org()
    await env.member(home, "nanoUser", email=KNOWN, token=False)
    runs: list[str] = []
    real_hash, real_verify = passwords.hash_password, passwords.verify_password

    async def counting_hash(password: str) -> str:
        runs.append("hash")
        return await real_hash(password)

    async def counting_verify(password_hash: str | None, password: str) -> bool:
        runs.append("verify")
        return await real_verify(password_hash, password)

    monkeypatch.setattr(invites_acceptance, "hash_password", counting_hash)
    monkeypatch.setattr(invites_acceptance, "verify_password", counting_verify)
    for email, password in ((UNKNOWN, PASSWORD), (KNOWN, WRONG), (KNOWN, PASSWORD)):
        _, token = await invitation(env, org)
        runs.clear()
        await _accept(env, token, email, password)
        assert len(runs) == 1, (email, password, runs)


async def test_the_invitation_page_is_the_same_for_everyone_and_signs_in_existing_accounts(env: Env) -> None:
    home, org = await env.org(), await env.org()
    await env.member(home, "nanoUser", email=KNOWN, token=False)
    _, token = await invitation(env, org)
    visitor = browser(env)
    page = await visitor.get(f"/invite/{token}")
    assert page.status_code == 200 and GUIDANCE in page.text
    assert "account_exists" not in page.text and "already exists" not in page.text

    wrong = await visitor.post(
        f"/invite/{token}",
        data={"csrf_token": csrf_of(page.text), "mode": "signup", "email": KNOWN, "password": WRONG},
    )
    assert wrong.status_code == 401 and "Email or password is wrong." in wrong.text
    assert GUIDANCE in wrong.text  # the same guidance, not a hint that the account exists

    joined = await visitor.post(
        f"/invite/{token}",
        data={"csrf_token": csrf_of(wrong.text), "mode": "signup", "email": KNOWN, "password": PASSWORD},
    )
    assert joined.status_code == 303 and joined.headers["location"] == "/organisation/overview"
    await visitor.aclose()

    _, second = await invitation(env, org)
    newcomer = browser(env)
    page = await newcomer.get(f"/invite/{second}")
    created = await newcomer.post(
        f"/invite/{second}",
        data={"csrf_token": csrf_of(page.text), "mode": "signup", "email": UNKNOWN, "password": PASSWORD},
    )
    assert (created.status_code, created.headers["location"]) == (
        joined.status_code,
        joined.headers["location"],
    )
    await newcomer.aclose()


async def test_the_dashboard_forms_check_emails_as_the_api_does(env: Env) -> None:
    """The invite form and the invitation sign-up reach the services without the API's models: the
    email rule lives in the service, so both refuse what the API refuses (400, nothing created)."""
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    dashboard = await signed_in(env, admin)
    form = await dashboard.get("/organisation/users/invite")
    refused = await dashboard.post(
        "/organisation/users/invite",
        data={
            "csrf_token": csrf_of(form.text),
            "role": "nanoUser",
            "email": "not an <email>",
            "expires_in_days": "7",
        },
    )
    assert refused.status_code == 400, refused.text
    listed = await env.client.get("/api/user/invite", headers=org.api_headers)
    assert listed.json()["items"] == []
    await dashboard.aclose()

    issued = await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=org.api_headers)
    token = issued.json()["token"]
    visitor = browser(env)
    page = await visitor.get(f"/invite/{token}")
    signup = await visitor.post(
        f"/invite/{token}",
        data={
            "csrf_token": csrf_of(page.text),
            "mode": "signup",
            "email": "x" * 400 + "@example.com",
            "password": PASSWORD,
        },
    )
    assert signup.status_code in (400, 422), signup.text
    assert (await env.client.get(f"/api/invite/{token}")).status_code == 200  # still pending
    await visitor.aclose()
