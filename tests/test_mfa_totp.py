"""Authenticator apps (TOTP), with pyotp as the app: setting one up, signing in with it, replayed
codes, clock skew, the per-account failure budget, removing one; and what adding or removing one
does to the account's other sessions."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select, update

from streamward.authn.mfa.models import TotpFactor
from streamward.authn.models import BintuSession
from streamward.crypto import digest
from streamward.db import utcnow
from streamward.users.models import Account
from tests.conftest import Env
from tests.support.data import audit_entries
from tests.support.mail import filed_mails
from tests.support.mfa import (
    Clock,
    enrol_app,
    error_code,
    first_step,
    login_with_app,
    password_body,
    second_step,
)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


async def _factor_rows(env: Env, account_id: object) -> list[TotpFactor]:
    async with env.runtime.database.session(write=False) as session:
        rows = await session.execute(select(TotpFactor).where(TotpFactor.account_id == account_id))
        return list(rows.scalars())


async def _enrolled(env: Env, account_id: object) -> bool:
    async with env.runtime.database.session(write=False) as session:
        return bool(await session.scalar(select(Account.mfa_enrolled).where(Account.id == account_id)))


async def test_set_up_an_app_confirm_it_and_sign_in_with_it(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")

    started = await env.client.post("/api/user/mfa/totp", json={"name": "Phone"}, headers=member.headers)
    assert started.status_code == 201, started.text
    body = started.json()
    secret = body["secret"]
    assert body["name"] == "Phone"
    assert body["otpauthUri"] == pyotp.TOTP(secret).provisioning_uri(
        name=member.email, issuer_name="Streamward"
    )
    assert body["qrSvg"].startswith("<svg") and "</svg>" in body["qrSvg"]
    # Sealed at rest, like the webhook secret.
    [row] = await _factor_rows(env, member.account.id)
    assert row.secret_sealed.startswith("v1.") and secret not in row.secret_sealed
    # Not a factor until confirmed.
    status = (await env.client.get("/api/user/mfa", headers=member.headers)).json()
    assert status == {
        "enrolled": False,
        "required": False,
        "totp": [],
        "passkeys": [],
        "recoveryCodes": {"remaining": 0},
    }
    assert (await env.client.post("/api/user/validate", json=password_body(member))).status_code == 200

    url = f"/api/user/mfa/totp/{body['id']}/confirm"
    wrong = await env.client.post(url, json={"code": "000000"}, headers=member.headers)
    assert (wrong.status_code, error_code(wrong)) == (400, "invalid_code")
    totp = pyotp.TOTP(secret)
    confirmed = await env.client.post(url, json={"code": totp.at(clock.now)}, headers=member.headers)
    assert confirmed.status_code == 200, confirmed.text
    confirmed_body = confirmed.json()
    assert confirmed_body["id"] == body["id"] and confirmed_body["name"] == "Phone"
    assert len(set(confirmed_body["recoveryCodes"])) == 10
    again = await env.client.post(url, json={"code": totp.at(clock.now)}, headers=member.headers)
    assert (again.status_code, error_code(again)) == (409, "factor_already_confirmed")
    assert await _enrolled(env, member.account.id)
    status = (await env.client.get("/api/user/mfa", headers=member.headers)).json()
    assert status["enrolled"] is True and status["recoveryCodes"] == {"remaining": 10}
    assert [(app["id"], app["name"]) for app in status["totp"]] == [(body["id"], "Phone")]

    # The code that confirmed the app does not sign in: its step is used.
    details = await first_step(env, member)
    assert details["factors"] == ["totp", "recoveryCode"]
    replayed = await second_step(env, details["challenge"], code=totp.at(clock.now))
    assert (replayed.status_code, error_code(replayed)) == (401, "invalid_second_factor")
    clock.step()
    signed_in = await second_step(env, details["challenge"], code=totp.at(clock.now))
    assert signed_in.status_code == 200, signed_in.text
    login = signed_in.json()
    assert set(login) == {"token", "expiresAt", "organisation", "role", "user"}  # /validate's body
    assert login["user"] == {"id": str(member.id), "email": member.email}
    assert login["role"]["name"] == "nanoUser"
    assert (
        await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": login["token"]})
    ).status_code == 200
    before, after = await audit_entries(env, org=org, action="user.login")
    assert before.after is None  # the password alone, before the app was set up
    assert after.after == {"method": "password+totp"} and after.target_id == str(member.id)


async def test_the_login_body_carries_the_api_key_for_an_admin(env: Env, clock: Clock) -> None:
    org = await env.org()
    admin = await env.member(org)
    app = await enrol_app(env, admin, clock)
    details = await first_step(env, admin)
    response = await second_step(env, details["challenge"], code=app.code(clock))
    assert response.status_code == 200, response.text
    assert response.json()["apiKey"] == org.api_key


async def test_a_code_is_accepted_once_even_by_two_logins_at_the_same_moment(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    code = app.code(clock)
    first, second = await first_step(env, member), await first_step(env, member)
    answers = await asyncio.gather(
        second_step(env, first["challenge"], code=code), second_step(env, second["challenge"], code=code)
    )
    assert sorted(r.status_code for r in answers) == [200, 401]
    assert {error_code(r) for r in answers if r.status_code == 401} == {"invalid_second_factor"}
    # Later, in a login of its own: still refused.
    third = await first_step(env, member)
    replay = await second_step(env, third["challenge"], code=code)
    assert (replay.status_code, error_code(replay)) == (401, "invalid_second_factor")
    # The app's next code is fine.
    clock.step()
    assert (await second_step(env, third["challenge"], code=app.code(clock))).status_code == 200


async def test_one_step_of_clock_skew_either_way_is_accepted_two_are_not(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    clock.step(10)
    details = await first_step(env, member)
    for offset in (-2, 2):  # the phone's clock a minute off
        refused = await second_step(env, details["challenge"], code=app.code(clock, offset))
        assert (refused.status_code, error_code(refused)) == (401, "invalid_second_factor"), offset
    # 30 seconds behind, on time, 30 seconds ahead: each accepted (each a later step than the last).
    for offset in (-1, 0, 1):
        if offset != -1:
            details = await first_step(env, member)
        accepted = await second_step(env, details["challenge"], code=app.code(clock, offset))
        assert accepted.status_code == 200, (offset, accepted.text)


async def test_wrong_codes_spend_the_accounts_failure_budget(env: Env, clock: Clock) -> None:
    env.runtime.login_throttle.failures_per_account.capacity = 3
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)
    for _ in range(3):
        wrong = await second_step(env, details["challenge"], code="123456")
        assert (wrong.status_code, error_code(wrong)) == (401, "invalid_second_factor")
    # The budget is spent: even the right code waits, and so does the password step.
    throttled = await second_step(env, details["challenge"], code=app.code(clock))
    assert (throttled.status_code, error_code(throttled)) == (429, "rate_limited")
    assert int(throttled.headers["Retry-After"]) >= 1
    password = await env.client.post("/api/user/validate", json=password_body(member))
    assert (password.status_code, error_code(password)) == (429, "rate_limited")
    failed = await audit_entries(env, org=org, action="user.login_failed")
    assert [entry.after for entry in failed] == [
        {"reason": "invalid_second_factor", "method": "password+totp"}
    ] * 3


async def test_adding_an_app_ends_the_accounts_other_sessions(env: Env, clock: Clock) -> None:
    first, second = await env.org(), await env.org()
    member = await env.member(first, "nanoReadOnly", email="two-orgs@example.com")
    elsewhere = await env.member(second, "nanoUser", email="two-orgs@example.com")
    other_tab = await env.issue_token(member)
    bystander = await env.member(first, "nanoReadOnly")

    app = await enrol_app(env, member, clock)

    assert (await env.client.get("/api/organisation", headers=member.headers)).status_code == 200
    for token in (other_tab, elsewhere.token):
        gone = await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": token})
        assert gone.status_code == 401
    assert (await env.client.get("/api/organisation", headers=bystander.headers)).status_code == 200
    # Audited in each organisation of the account, without the secret.
    for org, membership in ((first, member), (second, elsewhere)):
        [entry] = await audit_entries(env, org=org, action="user.mfa_added")
        assert entry.target_id == str(membership.id)
        assert entry.after == {"kind": "totp", "name": "Phone", "otherSessionsEnded": 2}
        assert app.secret not in str(entry.after)


async def test_removing_an_app_needs_the_password_or_a_fresh_code(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    stranger = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    spare = await enrol_app(env, member, clock, name="Spare")
    other_tab = await env.issue_token(member)
    url = f"/api/user/mfa/totp/{app.factor_id}"

    for proof in (
        None,
        {},
        {"password": "not it"},
        {"code": "000000"},
        {"password": member.password, "code": "1"},
    ):
        refused = await env.client.request("DELETE", url, json=proof, headers=member.headers)
        assert (refused.status_code, error_code(refused)) == (400, "invalid_proof"), proof
    theirs = await env.client.request(
        "DELETE", url, json={"password": stranger.password}, headers=stranger.headers
    )
    assert (theirs.status_code, error_code(theirs)) == (404, "not_found")

    removed = await env.client.request(
        "DELETE", url, json={"code": spare.code(clock)}, headers=member.headers
    )
    assert removed.status_code == 204, removed.text
    assert (await env.client.get("/api/organisation", headers=member.headers)).status_code == 200
    assert (
        await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": other_tab})
    ).status_code == 401
    [entry] = await audit_entries(env, org=org, action="user.mfa_removed")
    assert entry.after == {"kind": "totp", "name": "Phone", "otherSessionsEnded": 1}
    status = (await env.client.get("/api/user/mfa", headers=member.headers)).json()
    assert [a["name"] for a in status["totp"]] == ["Spare"] and status["enrolled"] is True

    # The last one, with the password: no second factor any more, and no recovery codes either.
    clock.step()
    last = await env.client.request(
        "DELETE",
        f"/api/user/mfa/totp/{spare.factor_id}",
        json={"password": member.password},
        headers=member.headers,
    )
    assert last.status_code == 204, last.text
    status = (await env.client.get("/api/user/mfa", headers=member.headers)).json()
    assert status["enrolled"] is False and status["recoveryCodes"] == {"remaining": 0}
    assert not await _enrolled(env, member.account.id)
    assert (await env.client.post("/api/user/validate", json=password_body(member))).status_code == 200


async def test_wrong_proofs_spend_the_failure_budget(env: Env, clock: Clock) -> None:
    env.runtime.login_throttle.failures_per_account.capacity = 2
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    url = f"/api/user/mfa/totp/{app.factor_id}"
    for _ in range(2):
        wrong = await env.client.request("DELETE", url, json={"password": "guess"}, headers=member.headers)
        assert (wrong.status_code, error_code(wrong)) == (400, "invalid_proof")
    throttled = await env.client.request(
        "DELETE", url, json={"password": member.password}, headers=member.headers
    )
    assert (throttled.status_code, error_code(throttled)) == (429, "rate_limited")
    assert len(await _factor_rows(env, member.account.id)) == 1


async def test_another_accounts_app_cannot_be_confirmed(env: Env, clock: Clock) -> None:
    org = await env.org()
    owner, other = await env.member(org, "nanoReadOnly"), await env.member(org, "nanoReadOnly")
    started = (await env.client.post("/api/user/mfa/totp", json={}, headers=owner.headers)).json()
    code = pyotp.TOTP(started["secret"]).at(clock.now)
    refused = await env.client.post(
        f"/api/user/mfa/totp/{started['id']}/confirm", json={"code": code}, headers=other.headers
    )
    assert (refused.status_code, error_code(refused)) == (404, "not_found")
    assert started["name"] == "Authenticator app"
    assert not await _enrolled(env, owner.account.id) and not await _enrolled(env, other.account.id)


async def test_login_with_an_app_end_to_end_twice(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    tokens = [await login_with_app(env, member, app, clock) for _ in range(2)]
    assert len(set(tokens)) == 2
    for token in tokens:
        assert (
            await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": token})
        ).status_code == 200


async def _age(env: Env, token: str, minutes: int) -> None:
    """Make the session of ``token`` a login of ``minutes`` ago."""
    async with env.runtime.database.session() as session:
        await session.execute(
            update(BintuSession)
            .where(BintuSession.token_hash == digest(token))
            .values(created_at=utcnow() - timedelta(minutes=minutes))
        )
        await session.commit()


async def test_adding_a_factor_later_than_just_after_signing_in_needs_proof(env: Env, clock: Clock) -> None:
    """A factor is a way in of its own (a passkey signs in without the password): a stolen session
    or a named token must not plant one. Right after a login nothing more is asked; later, the
    password or an app code, as removing a factor asks."""
    org = await env.org()
    member = await env.member(org)  # an administrator: named tokens need apikey:read
    await _age(env, member.token, minutes=11)
    for path in ("/api/user/mfa/totp", "/api/user/mfa/passkeys/options"):
        refused = await env.client.post(path, json={}, headers=member.headers)
        assert (refused.status_code, error_code(refused)) == (403, "proof_required"), path
        wrong = await env.client.post(path, json={"password": "not my password 1"}, headers=member.headers)
        assert (wrong.status_code, error_code(wrong)) == (400, "invalid_proof"), path
    proven = await env.client.post(
        "/api/user/mfa/totp", json={"password": member.password}, headers=member.headers
    )
    assert proven.status_code == 201, proven.text
    options = await env.client.post(
        "/api/user/mfa/passkeys/options", json={"password": member.password}, headers=member.headers
    )
    assert options.status_code == 200, options.text

    # A named token, however new, is not a sign-in.
    named = await env.client.post(
        "/api/bintu/token", json={"name": "CI", "expiresInDays": 30}, headers=member.headers
    )
    assert named.status_code == 201, named.text
    automation = {"X-BINTU-TOKEN": named.json()["token"]}
    refused = await env.client.post("/api/user/mfa/totp", json={}, headers=automation)
    assert (refused.status_code, error_code(refused)) == (403, "proof_required")
    # A fresh login needs nothing more.
    fresh = {"X-BINTU-TOKEN": await env.issue_token(member)}
    assert (await env.client.post("/api/user/mfa/totp", json={}, headers=fresh)).status_code == 201


async def test_the_owner_is_told_of_every_factor_added(env: Env, clock: Clock) -> None:
    """A factor is a new way in: whoever added it, the account's owner hears of it (after the
    commit), with the address it was added from."""
    org = await env.org()
    member = await env.member(org, "nanoUser")
    await enrol_app(env, member, clock, name="Phone")
    await enrol_app(env, member, clock, name="Tablet")
    told = [m for m in filed_mails(env) if m["To"] == member.email]
    assert [str(m["Subject"]) for m in told] == [
        "An authenticator app was added to your Streamward account"
    ] * 2
    assert "'Phone'" in told[0].get_content() and "'Tablet'" in told[1].get_content()
