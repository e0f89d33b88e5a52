"""The login of an account with a second factor, in two steps: what the password step answers, and
what the challenge it hands out is bound to (the account, the client, five minutes, five wrong
answers, one use). The second step hashes no password."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select, update

from streamward import passwords
from streamward.authn import login_statements, password_changes
from streamward.authn import service as authn_service
from streamward.authn.mfa import factors
from streamward.authn.mfa.models import LoginChallenge
from streamward.crypto import digest
from streamward.db import utcnow
from streamward.housekeeping import purge
from streamward.lookup_pool import LookupPool
from streamward.schemas import format_utc
from tests.conftest import Env, Member
from tests.support.data import audit_entries
from tests.support.interleave import Hold, one_then_other
from tests.support.mail import reset_link
from tests.support.mfa import Clock, enrol_app, error_code, first_step, password_body, second_step


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


async def _challenge_row(env: Env, token: str) -> LoginChallenge:
    async with env.runtime.database.session(write=False) as session:
        row = await session.execute(select(LoginChallenge).where(LoginChallenge.token_hash == digest(token)))
        return row.scalar_one()


async def test_the_password_step_answers_mfa_required_with_a_challenge(env: Env, clock: Clock) -> None:
    first, second = await env.org(), await env.org()
    member = await env.member(first, "nanoUser", email="both@example.com")
    await env.member(second, "nanoUser", email="both@example.com")
    await enrol_app(env, member, clock)

    # What comes before the second factor still comes first: the password, then the organisation.
    wrong = await env.client.post("/api/user/validate", json={"email": member.email, "password": "nope"})
    assert (wrong.status_code, error_code(wrong)) == (401, "invalid_credentials")
    ambiguous = await env.client.post(
        "/api/user/validate", json={"email": member.email, "password": member.password}
    )
    assert (ambiguous.status_code, error_code(ambiguous)) == (409, "organisation_required")

    response = await env.client.post("/api/user/validate", json=password_body(member))
    assert response.status_code == 401
    body = response.json()
    assert "token" not in body
    assert body["error"]["code"] == "mfa_required"
    details = body["error"]["details"]
    assert set(details) == {"challenge", "expiresAt", "factors"}  # no passkey: no publicKey
    assert details["challenge"].startswith("swc_") and len(details["challenge"]) > 40
    assert details["factors"] == ["totp", "recoveryCode"]
    row = await _challenge_row(env, details["challenge"])  # stored as its digest only
    assert row.purpose == "mfa" and row.account_id == member.account.id and row.membership_id == member.id
    assert row.client_address == "203.0.113.10" and row.attempts == 0 and row.used_at is None
    assert row.expires_at - row.created_at == timedelta(minutes=5)
    assert details["expiresAt"] == format_utc(row.expires_at)
    # No login yet: nothing issued, nothing audited as a login.
    assert await audit_entries(env, action="user.login") == []


async def test_a_challenge_answers_only_from_the_client_that_opened_it(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)
    async with env.client_from("198.51.100.7") as elsewhere:
        stolen = await second_step(env, details["challenge"], client=elsewhere, code=app.code(clock))
    assert (stolen.status_code, error_code(stolen)) == (401, "invalid_challenge")
    # The other client's attempt did not use it up, nor count against it.
    assert (await _challenge_row(env, details["challenge"])).attempts == 0
    assert (await second_step(env, details["challenge"], code=app.code(clock))).status_code == 200


async def test_five_wrong_answers_use_the_challenge_up(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)
    for answer in ({"code": "000000"}, {"code": "12"}, {"recoveryCode": "aaaaa-bbbbb"}, {"code": "999999"}):
        wrong = await second_step(env, details["challenge"], **answer)
        assert (wrong.status_code, error_code(wrong)) == (401, "invalid_second_factor"), answer
    assert (await _challenge_row(env, details["challenge"])).attempts == 4
    fifth = await second_step(env, details["challenge"], code="111111")
    assert (fifth.status_code, error_code(fifth)) == (401, "invalid_second_factor")
    row = await _challenge_row(env, details["challenge"])
    assert row.attempts == 5 and row.used_at is not None
    right_too_late = await second_step(env, details["challenge"], code=app.code(clock))
    assert (right_too_late.status_code, error_code(right_too_late)) == (401, "invalid_challenge")
    failed = await audit_entries(env, org=org, action="user.login_failed")
    assert len(failed) == 5 and {e.after["reason"] for e in failed if e.after} == {"invalid_second_factor"}
    assert failed[2].after == {"reason": "invalid_second_factor", "method": "password+recoveryCode"}
    # A new password step starts afresh.
    again = await first_step(env, member)
    assert (await second_step(env, again["challenge"], code=app.code(clock))).status_code == 200


async def test_wrong_answers_sent_together_all_count(env: Env, clock: Clock) -> None:
    """Second steps of one account queue on its row and read the challenge as it was when they
    began: the count is kept by the database, so five sent at once use the challenge up."""
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)
    wrong = await asyncio.gather(*(second_step(env, details["challenge"], code="000000") for _ in range(5)))
    assert {(r.status_code, error_code(r)) for r in wrong} == {(401, "invalid_second_factor")}
    row = await _challenge_row(env, details["challenge"])
    assert row.attempts == 5 and row.used_at is not None
    right_too_late = await second_step(env, details["challenge"], code=app.code(clock))
    assert (right_too_late.status_code, error_code(right_too_late)) == (401, "invalid_challenge")


async def test_a_challenge_expires_after_five_minutes(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)
    async with env.runtime.database.session() as session:
        await session.execute(
            update(LoginChallenge)
            .where(LoginChallenge.token_hash == digest(details["challenge"]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    expired = await second_step(env, details["challenge"], code=app.code(clock))
    assert (expired.status_code, error_code(expired)) == (401, "invalid_challenge")

    # Housekeeping deletes expired challenges; the live ones stay.
    live = await first_step(env, member)
    counts = await purge(env.runtime.database, retention_days=30)
    assert counts["login challenges"] == 1
    assert (await second_step(env, live["challenge"], code=app.code(clock))).status_code == 200


async def test_a_challenge_is_used_once_and_only_for_its_own_account(env: Env, clock: Clock) -> None:
    org = await env.org()
    alice, bob = await env.member(org, "nanoReadOnly"), await env.member(org, "nanoUser")
    alice_app, bob_app = await enrol_app(env, alice, clock), await enrol_app(env, bob, clock)
    alices = await first_step(env, alice)
    # Bob's code does not finish Alice's login (and is not spent by the attempt).
    bobs_code = bob_app.code(clock)
    refused = await second_step(env, alices["challenge"], code=bobs_code)
    assert (refused.status_code, error_code(refused)) == (401, "invalid_second_factor")
    bobs = await first_step(env, bob)
    assert (await second_step(env, bobs["challenge"], code=bobs_code)).json()["user"]["id"] == str(bob.id)

    done = await second_step(env, alices["challenge"], code=alice_app.code(clock))
    assert done.status_code == 200 and done.json()["user"]["id"] == str(alice.id)
    clock.step()
    reused = await second_step(env, alices["challenge"], code=alice_app.code(clock))
    assert (reused.status_code, error_code(reused)) == (401, "invalid_challenge")


async def test_unknown_challenges_and_malformed_answers(env: Env, clock: Clock) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    for token in ("swc_" + "x" * 43, "not-a-challenge", "x" * 128):
        unknown = await second_step(env, token, code=app.code(clock))
        assert (unknown.status_code, error_code(unknown)) == (401, "invalid_challenge"), token
    details = await first_step(env, member)
    for body in (
        {"challenge": details["challenge"]},
        {"challenge": details["challenge"], "code": "123456", "recoveryCode": "aaaaa-bbbbb"},
        {"challenge": details["challenge"], "code": "1" * 17},
        {"challenge": "x" * 129, "code": "123456"},
        {"code": "123456"},
    ):
        malformed = await env.client.post("/api/user/validate/mfa", json=body)
        assert (malformed.status_code, error_code(malformed)) == (422, "validation_error"), body
    # A passkey answer to a challenge that asked for none: wrong, not a crash.
    passkey = await second_step(env, details["challenge"], assertion={"id": "abc", "type": "public-key"})
    assert (passkey.status_code, error_code(passkey)) == (401, "invalid_second_factor")
    # A challenge opened for another ceremony (a passwordless login) does not finish this one.
    passwordless = await env.client.post("/api/user/passkey/options")
    assert passwordless.status_code == 200, passwordless.text
    other = await second_step(env, passwordless.json()["challenge"], code=app.code(clock))
    assert (other.status_code, error_code(other)) == (401, "invalid_challenge")


async def test_the_second_step_hashes_no_password(
    env: Env, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await env.org()
    member = await env.member(org)
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)

    calls: list[str] = []

    def spy(name: str, real: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return await real(*args, **kwargs)

        return wrapper

    # Wherever the services imported them from.
    for module in (passwords, authn_service, password_changes, factors):
        for name in ("hash_password", "verify_password"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    response = await second_step(env, details["challenge"], code=app.code(clock))
    assert response.status_code == 200, response.text
    assert calls == []
    # The spies do see the password step.
    await first_step(env, member)
    assert calls == ["verify_password"]


async def test_a_member_of_several_organisations_finishes_in_the_one_chosen(env: Env, clock: Clock) -> None:
    first, second = await env.org("First"), await env.org("Second")
    member = await env.member(first, "nanoReadOnly", email="two@example.com")
    there = await env.member(second, "nanoUser", email="two@example.com")
    app = await enrol_app(env, member, clock)
    body = {"email": member.email, "password": member.password, "organisation": str(second.id)}
    response = await env.client.post("/api/user/validate", json=body)
    assert error_code(response) == "mfa_required"
    done = await second_step(env, response.json()["error"]["details"]["challenge"], code=app.code(clock))
    assert done.status_code == 200, done.text
    assert done.json()["organisation"] == {"id": str(second.id), "name": "Second"}
    assert done.json()["user"]["id"] == str(there.id)


async def test_removing_the_membership_ends_its_pending_challenge(env: Env, clock: Clock) -> None:
    org = await env.org()
    admin = await env.member(org)
    member = await env.member(org, "nanoReadOnly")
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)
    assert (await env.client.delete(f"/api/user/{member.id}", headers=admin.headers)).status_code == 204
    gone = await second_step(env, details["challenge"], code=app.code(clock))
    assert (gone.status_code, error_code(gone)) == (401, "invalid_challenge")


async def test_the_second_step_costs_one_statement_more_than_a_plain_login(
    env: Env, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's budget: no second password hash (above) and at most one more round trip. Both
    through SQLAlchemy and on the raw look-up pool (PostgreSQL: each login is a read and a write)."""
    org = await env.org()
    plain = await env.member(org, "nanoUser")
    member = await env.member(org, "nanoUser")
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            statements.append(statement)

    for name in ("fetch", "fetchrow"):
        original = getattr(LookupPool, name)

        async def noted(self: LookupPool, sql: str, *args: Any, _original: Any = original) -> Any:
            statements.append(sql)
            return await _original(self, sql, *args)

        monkeypatch.setattr(LookupPool, name, noted)
    engine = env.runtime.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        assert (await env.client.post("/api/user/validate", json=password_body(plain))).status_code == 200
        password_only = len(statements)
        statements.clear()
        assert (await second_step(env, details["challenge"], code=app.code(clock))).status_code == 200
        second = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert 0 < second <= password_only + 1, (password_only, statements)


async def test_an_invitation_is_no_way_around_the_second_factor(env: Env, clock: Clock) -> None:
    """Accepting an invitation with email and password makes a session: for an account with a
    second factor the password alone is refused (after it was checked), and the person accepts
    with the bintu token of a complete login instead."""
    mine, theirs = await env.org("Mine"), await env.org("Theirs")
    person = await env.member(mine, "nanoUser")
    app = await enrol_app(env, person, clock)
    inviter = await env.member(theirs, "nanoAdmin")
    invited = await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=inviter.headers)
    assert invited.status_code == 201, invited.text
    accept = f"/api/invite/{invited.json()['token']}/accept"

    wrong = await env.client.post(accept, json={"email": person.email, "password": "not the password 1"})
    assert (wrong.status_code, error_code(wrong)) == (401, "invalid_credentials")
    refused = await env.client.post(accept, json={"email": person.email, "password": person.password})
    assert (refused.status_code, error_code(refused)) == (403, "mfa_sign_in_required")
    assert "token" not in refused.json()

    details = await first_step(env, person)
    signed_in = await second_step(env, details["challenge"], code=app.code(clock))
    assert signed_in.status_code == 200, signed_in.text
    joined = await env.client.post(accept, headers={"X-BINTU-TOKEN": signed_in.json()["token"]})
    assert joined.status_code == 200, joined.text
    assert joined.json()["organisation"]["id"] == str(theirs.id)


async def _new_password(env: Env, member: Member, how: str) -> httpx.Response:
    if how == "change":
        body = {"currentPassword": member.password, "newPassword": "a completely new passphrase"}
        return await env.client.put("/api/user/password", json=body, headers=member.headers)
    link = await reset_link(env, member.email)
    return await env.client.post(
        f"/api/user/password/reset/{link}", json={"password": "a completely new passphrase"}
    )


@pytest.mark.parametrize("how", ["change", "reset"])
async def test_a_new_password_ends_the_second_steps_the_old_one_opened(
    env: Env, clock: Clock, how: str
) -> None:
    """Whoever passed the password step with the old password cannot finish the login once the
    password is changed or reset (it ends every session: the challenge is no way around that)."""
    org = await env.org()
    member = await env.member(org, "nanoUser")
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)
    assert (await _new_password(env, member, how)).status_code == 204
    late = await second_step(env, details["challenge"], code=app.code(clock))
    assert (late.status_code, error_code(late)) == (401, "invalid_challenge")


@pytest.mark.parametrize("how", ["change", "reset"])
async def test_a_second_step_under_way_does_not_outlive_a_new_password(
    env: Env, clock: Clock, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A second step that has judged its app's code right when the password changes: its write
    (one statement on PostgreSQL that locks the account first, as the change does; on SQLite under
    the write lock) finds the challenge used up and makes no session; had it come first, the change
    would have ended the session it made."""
    org = await env.org()
    member = await env.member(org, "nanoUser")
    app = await enrol_app(env, member, clock)
    details = await first_step(env, member)
    hold = Hold(monkeypatch, login_statements, "write_app_session")
    step = second_step(env, details["challenge"], code=app.code(clock))
    finished, changed = await one_then_other(hold, step, _new_password(env, member, how))
    assert changed.status_code == 204, changed.text
    if finished.status_code == 200:
        token = {"X-BINTU-TOKEN": finished.json()["token"]}
        assert (await env.client.get("/api/organisation", headers=token)).status_code == 401
    else:
        assert (finished.status_code, error_code(finished)) == (401, "invalid_challenge"), finished.text
