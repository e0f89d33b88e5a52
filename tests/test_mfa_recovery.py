"""Recovery codes: ten, shown once at the first factor, stored keyed-hashed, single use (also under ten
concurrent uses of one code), replaceable; using one ends the account's other sessions, is audited
and mailed."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from streamward.authn.mfa import recovery
from streamward.authn.mfa.models import RecoveryCode
from tests.conftest import Env
from tests.support.data import audit_entries
from tests.support.mail import filed_mails
from tests.support.mfa import App, Clock, enrol_app, error_code, first_step, second_step


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def _codes(app: App) -> list[str]:
    assert app.recovery_codes is not None
    return app.recovery_codes


async def test_the_first_factor_shows_ten_codes_once_stored_as_keyed_digests(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    codes = _codes(app)
    assert len(set(codes)) == 10
    for code in codes:
        assert len(code) == 11 and code[5] == "-"
        assert set(code.replace("-", "")) <= set(recovery.ALPHABET)
    # A second app: no new codes.
    spare = await enrol_app(env, member, clock, name="Spare")
    assert spare.recovery_codes is None
    async with env.runtime.database.session(write=False) as session:
        stored = list(
            (
                await session.execute(
                    select(RecoveryCode.code_hash).where(RecoveryCode.account_id == member.account.id)
                )
            ).scalars()
        )
    assert len(stored) == 10
    text = " ".join(stored)
    assert not any(code.replace("-", "") in text for code in codes)
    assert all(len(value) == 64 for value in stored)


async def test_a_recovery_code_signs_in_once_ends_other_sessions_and_is_mailed(
    env: Env, clock: Clock
) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    app = await enrol_app(env, member, clock)
    code = _codes(app)[3]
    old_session = member.token

    details = await first_step(env, member)
    # Typed carelessly: upper case, no dash, spaces.
    typed = code.upper().replace("-", "  ")
    response = await second_step(env, details["challenge"], recoveryCode=typed)
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    assert (await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": token})).status_code == 200
    # Whoever held the account's sessions is out: a recovery code is used when something was lost.
    assert (
        await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": old_session})
    ).status_code == 401

    [used] = await audit_entries(env, org=org, action="user.recovery_code_used")
    assert used.after == {"otherSessionsEnded": 1} and code not in str(used.after)
    logins = await audit_entries(env, org=org, action="user.login")
    assert logins[-1].after == {"method": "password+recoveryCode"}
    [mail] = [m for m in filed_mails(env) if "recovery code" in str(m["Subject"])]
    assert mail["To"] == member.email
    body = mail.get_content()
    assert "9 unused codes are left" in body and "203.0.113.10" in body and code not in body

    status = (await env.client.get("/api/user/mfa", headers={"X-BINTU-TOKEN": token})).json()
    assert status["recoveryCodes"] == {"remaining": 9}
    again = await first_step(env, member)
    reused = await second_step(env, again["challenge"], recoveryCode=code)
    assert (reused.status_code, error_code(reused)) == (401, "invalid_second_factor")
    assert (await second_step(env, again["challenge"], recoveryCode=_codes(app)[4])).status_code == 200


async def test_ten_concurrent_uses_of_one_code_let_exactly_one_in(env: Env, clock: Clock) -> None:
    throttle = env.runtime.login_throttle
    throttle.per_address.capacity = throttle.failures_per_account.capacity = 100
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    code = _codes(app)[0]
    challenges = [(await first_step(env, member))["challenge"] for _ in range(10)]

    answers = await asyncio.gather(*(second_step(env, c, recoveryCode=code) for c in challenges))

    statuses = sorted((r.status_code, error_code(r)) for r in answers)
    assert statuses == [(200, None)] + [(401, "invalid_second_factor")] * 9, statuses
    assert len(await audit_entries(env, org=org, action="user.recovery_code_used")) == 1
    [winner] = [r for r in answers if r.is_success]
    headers = {"X-BINTU-TOKEN": winner.json()["token"]}
    status = (await env.client.get("/api/user/mfa", headers=headers)).json()
    assert status["recoveryCodes"] == {"remaining": 9}


async def test_new_codes_replace_every_earlier_one(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    plain = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    other_tab = await env.issue_token(member)

    none = await env.client.post(
        "/api/user/mfa/recovery-codes", json={"password": plain.password}, headers=plain.headers
    )
    assert (none.status_code, error_code(none)) == (400, "no_second_factor")
    for proof in ({}, {"password": "wrong"}, {"code": "000000"}):
        refused = await env.client.post("/api/user/mfa/recovery-codes", json=proof, headers=member.headers)
        assert (refused.status_code, error_code(refused)) == (400, "invalid_proof"), proof

    replaced = await env.client.post(
        "/api/user/mfa/recovery-codes", json={"code": app.code(clock)}, headers=member.headers
    )
    assert replaced.status_code == 200, replaced.text
    new_codes = replaced.json()["recoveryCodes"]
    assert len(set(new_codes)) == 10 and not set(new_codes) & set(_codes(app))
    assert (
        await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": other_tab})
    ).status_code == 401
    assert (await env.client.get("/api/organisation", headers=member.headers)).status_code == 200
    [entry] = await audit_entries(env, org=org, action="user.recovery_codes_regenerated")
    assert entry.after == {"otherSessionsEnded": 1}

    details = await first_step(env, member)
    old = await second_step(env, details["challenge"], recoveryCode=_codes(app)[0])
    assert (old.status_code, error_code(old)) == (401, "invalid_second_factor")
    assert (await second_step(env, details["challenge"], recoveryCode=new_codes[0])).status_code == 200


async def test_codes_of_one_account_do_not_open_another(env: Env, clock: Clock) -> None:
    org = await env.org()
    alice, bob = await env.member(org, "nanoReadOnly"), await env.member(org, "nanoReadOnly")
    alices = await enrol_app(env, alice, clock)
    await enrol_app(env, bob, clock)
    details = await first_step(env, bob)
    refused = await second_step(env, details["challenge"], recoveryCode=_codes(alices)[0])
    assert (refused.status_code, error_code(refused)) == (401, "invalid_second_factor")
    # Still Alice's to use.
    mine = await first_step(env, alice)
    assert (await second_step(env, mine["challenge"], recoveryCode=_codes(alices)[0])).status_code == 200
