"""What makes a session and what ends an account's sessions, at the same time: nothing made meanwhile
outlives the change that ends them, and no two of them deadlock (a 500). Each test holds one
request at a chosen point and sends the other meanwhile. On SQLite every writer holds the database's
write lock, so they run one after the other; the interleavings are PostgreSQL's (run on both).

tests/test_passwords.py and tests/test_mfa_login.py hold the first cases (a login, a second step,
a named token under way while the password changes; a member removed while they log in)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authn import login_statements, password_changes
from streamward.authn import service as authn_service
from streamward.authn.mfa.models import RecoveryCode
from streamward.authn.models import BintuSession
from streamward.db import utcnow
from streamward.users import service as users_service
from tests.conftest import PASSWORD, Env
from tests.support.data import audit_entries, invitation
from tests.support.interleave import Hold, one_then_other, refused_now
from tests.support.mail import reset_link
from tests.support.mfa import Clock, enrol_app, error_code, first_step, second_step

NEW_PASSWORD = "a completely new passphrase"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


async def sessions_idle(env: Env) -> None:
    """Every session last used ten minutes ago: a writing request records its use (a write)."""
    async with env.runtime.database.session() as session:
        await session.execute(update(BintuSession).values(last_used_at=utcnow() - timedelta(minutes=10)))
        await session.commit()


@pytest.mark.parametrize("made_by", ["named token", "joining with one's token"])
async def test_a_token_asked_for_during_a_reset_is_refused_or_ended(
    env: Env, monkeypatch: pytest.MonkeyPatch, made_by: str
) -> None:
    """The reset holds the account (its sessions deleted, not yet committed) when the request checks
    its own session: it waits, and then sees that session gone."""
    org, other = await env.org(), await env.org()
    member = await env.member(org, "nanoAdmin", email="victim@example.com")
    link = await reset_link(env, member.email)
    _, invite = await invitation(env, other)
    hold = Hold(monkeypatch, password_changes, "memberships_of")  # after the sessions' deletion
    reset = env.client.post(f"/api/user/password/reset/{link}", json={"password": NEW_PASSWORD})
    if made_by == "named token":
        body = {"name": "ci", "expiresInDays": 30}
        made = env.client.post("/api/bintu/token", json=body, headers=member.headers)
    else:
        made = env.client.post(f"/api/invite/{invite}/accept", headers=member.headers)
    reset_response, made_response = await one_then_other(hold, reset, made)
    assert reset_response.status_code == 204, reset_response.text
    await refused_now(env, made_response)


async def test_a_named_token_from_an_idle_session_during_a_reset_is_no_deadlock(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle session's request records its use (an update of its session row): last, before its
    commit, not first, where it held the row the reset waits to delete while waiting for the
    account the reset holds."""
    org = await env.org()
    member = await env.member(org, "nanoAdmin", email="idle@example.com")
    link = await reset_link(env, member.email)
    await sessions_idle(env)
    from streamward.authn import service as authn_service

    hold = Hold(monkeypatch, authn_service, "account_still_signed_in")
    body = {"name": "ci", "expiresInDays": 30}
    made = env.client.post("/api/bintu/token", json=body, headers=member.headers)
    reset = env.client.post(f"/api/user/password/reset/{link}", json={"password": NEW_PASSWORD})
    made_response, reset_response = await one_then_other(hold, made, reset)
    assert reset_response.status_code == 204, reset_response.text
    await refused_now(env, made_response)


async def test_a_password_change_from_an_idle_session_while_the_member_is_removed(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both take the account first: the removal waits for the change (or the change, second, finds
    the member gone: 401), and neither ends in a 500."""
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    member = await env.member(org, "nanoUser", email="leaving@example.com")
    await sessions_idle(env)
    hold = Hold(monkeypatch, password_changes, "verify_password")
    body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    change = env.client.put("/api/user/password", json=body, headers=member.headers)
    removal = env.client.delete(f"/api/user/{member.id}", headers=admin.headers)
    changed, removed = await one_then_other(hold, change, removal)
    assert removed.status_code == 204, removed.text
    assert changed.status_code in (204, 401), changed.text
    assert (await env.client.get("/api/organisation", headers=member.headers)).status_code == 401


async def test_a_password_change_and_a_reset_of_one_account_queue(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both lock the account before anything else (the reset used to use up its link first, and
    deadlocked with a change that held the account and wanted the links)."""
    org = await env.org()
    member = await env.member(org, "nanoUser", email="twice@example.com")
    link = await reset_link(env, member.email)
    hold = Hold(monkeypatch, password_changes, "_retire_reset_links")
    reset = env.client.post(f"/api/user/password/reset/{link}", json={"password": NEW_PASSWORD})
    body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD + " too"}
    change = env.client.put("/api/user/password", json=body, headers=member.headers)
    reset_response, changed = await one_then_other(hold, reset, change)
    assert reset_response.status_code == 204, reset_response.text
    # Second, the change finds the password already new (PostgreSQL: it waited for the account and
    # read it again), or its session ended (SQLite: it waited before authenticating).
    assert error_code(changed) in ("wrong_password", "unauthenticated"), changed.text


@pytest.mark.parametrize(
    "answer", [{"recoveryCode": "abcd-efgh-ijkl"}, {"code": "000000"}], ids=["code", "app"]
)
async def test_a_wrong_answer_while_the_membership_goes_is_refused_not_a_500(
    env: Env, monkeypatch: pytest.MonkeyPatch, clock: Clock, answer: dict[str, str]
) -> None:
    """A recovery code (any answer but an app's code) is judged under the account's lock: the step
    waits for the account the removal holds; the removal takes the challenge with the membership,
    and the step then has no row to count its wrong answer on: 401 invalid_challenge. A wrong app
    code is counted without that lock (a conditional update of the challenge row): counted before
    the removal deletes the challenge, or refused as a challenge gone. Never a 500."""
    here, elsewhere = await env.org(), await env.org()
    admin = await env.member(here, "nanoAdmin")
    member = await env.member(here, "nanoUser", email="two-orgs@example.com")
    await env.member(elsewhere, "nanoUser", email="two-orgs@example.com")  # the account stays
    await enrol_app(env, member, clock)
    details = await first_step(env, member)
    locked, release = asyncio.Event(), asyncio.Event()
    execute = AsyncSession.execute

    async def held_after_the_account_lock(self: AsyncSession, statement: Any, *args: Any, **kw: Any) -> Any:
        result = await execute(self, statement, *args, **kw)
        if statement is users_service._ACCOUNT_LOCK and not locked.is_set():
            locked.set()
            await release.wait()
        return result

    monkeypatch.setattr(AsyncSession, "execute", held_after_the_account_lock)
    removal = asyncio.ensure_future(env.client.delete(f"/api/user/{member.id}", headers=admin.headers))
    await asyncio.wait_for(locked.wait(), 10)
    step = asyncio.ensure_future(second_step(env, details["challenge"], **answer))
    await asyncio.sleep(0.5)
    release.set()
    removed, answered = await asyncio.wait_for(asyncio.gather(removal, step), 30)
    assert removed.status_code == 204, removed.text
    refusals = (
        ("invalid_challenge",) if "recoveryCode" in answer else ("invalid_challenge", "invalid_second_factor")
    )
    assert (answered.status_code, error_code(answered) in refusals) == (401, True), answered.text


async def test_a_recovery_code_is_not_used_up_by_a_step_the_password_change_ended(
    env: Env, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """The step waits for the account the change holds; the change ends its challenge; the step's
    right answer is then refused, and nothing it wrote stays: the recovery code is still unused."""
    org = await env.org()
    member = await env.member(org, "nanoUser", email="recovery@example.com")
    app = await enrol_app(env, member, clock)
    assert app.recovery_codes
    details = await first_step(env, member)
    hold = Hold(monkeypatch, password_changes, "_retire_reset_links")  # the account locked and updated
    body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    change = env.client.put("/api/user/password", json=body, headers=member.headers)
    step = second_step(env, details["challenge"], recoveryCode=app.recovery_codes[0])
    changed, answered = await one_then_other(hold, change, step)
    assert changed.status_code == 204, changed.text
    assert (answered.status_code, error_code(answered)) == (401, "invalid_challenge"), answered.text
    async with env.runtime.database.session(write=False) as session:
        used = await session.scalar(
            select(func.count()).select_from(RecoveryCode).where(RecoveryCode.used_at.is_not(None))
        )
    assert used == 0


async def _change_meanwhile(env: Env, boss_headers: dict[str, str], member_id: Any, change: str) -> None:
    if change == "demoted":
        body = {"userId": str(member_id), "role": "nanoUser"}
        changed = await env.client.put("/api/user/permission", json=body, headers=boss_headers)
    else:
        changed = await env.client.put(
            "/api/organisation/mfa-policy", json={"required": True}, headers=boss_headers
        )
    assert changed.status_code == 200, changed.text


@pytest.mark.parametrize("change", ["demoted", "policy"])
async def test_a_login_answers_as_things_are_when_it_writes(
    env: Env, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """A password login reads the account, its role and its organisation before the hash, unlocked.
    An admin demoted meanwhile, or an organisation that turned on its second-factor policy meanwhile
    (this admin has none), committed before the login wrote: the answer carries no API key and no
    reveal is audited; the role answered is the role as it is."""
    org = await env.org()
    boss = await env.member(org, "nanoAdmin")
    admin = await env.member(org, "nanoAdmin", email="changing@example.com")
    hold = Hold(monkeypatch, authn_service, "verify_password")
    body = {"email": admin.email, "password": PASSWORD}
    login = asyncio.ensure_future(env.client.post("/api/user/validate", json=body))
    await asyncio.wait_for(hold.reached.wait(), 10)
    await _change_meanwhile(env, boss.headers, admin.id, change)
    hold.released.set()
    answered = await asyncio.wait_for(login, 30)
    assert answered.status_code == 200, answered.text
    assert "apiKey" not in answered.json()
    assert answered.json()["role"]["name"] == ("nanoUser" if change == "demoted" else "nanoAdmin")
    assert await audit_entries(env, org=org, action="apikey.revealed") == []
    assert len(await audit_entries(env, org=org, action="user.login", target_id=str(admin.id))) == 1


async def test_a_second_step_answers_with_the_role_as_it_is_when_it_writes(
    env: Env, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """The same for an app's code: the admin demoted after the challenge was read, before the write
    (PostgreSQL: the step reads apart from its transaction). On SQLite the step holds the write lock
    from its read on: the demotion waits for it, and the step signs in as the admin it still is."""
    org = await env.org()
    boss = await env.member(org, "nanoAdmin")
    admin = await env.member(org, "nanoAdmin", email="changing@example.com")
    app = await enrol_app(env, admin, clock)
    details = await first_step(env, admin)
    hold = Hold(monkeypatch, login_statements, "write_app_session")
    step = second_step(env, details["challenge"], code=app.code(clock))
    answered, _ = await one_then_other(hold, step, _change_meanwhile(env, boss.headers, admin.id, "demoted"))
    assert answered.status_code == 200, answered.text
    revealed = await audit_entries(env, org=org, action="apikey.revealed")
    if env.engine_name == "postgres":
        assert "apiKey" not in answered.json()
        assert answered.json()["role"]["name"] == "nanoUser"
        assert revealed == []
    else:
        assert answered.json()["role"]["name"] == "nanoAdmin"
        assert "apiKey" in answered.json() and len(revealed) == 1


async def test_a_second_factor_added_during_a_password_login_asks_for_it(
    env: Env, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """The account had no second factor when the login read it, and has one when it writes: the
    login asks for the second step (it is not signed in with the password alone, nor refused as if
    the password were wrong)."""
    org = await env.org()
    member = await env.member(org, "nanoUser")
    hold = Hold(monkeypatch, authn_service, "verify_password")
    body = {"email": member.email, "password": PASSWORD}
    login = asyncio.ensure_future(env.client.post("/api/user/validate", json=body))
    await asyncio.wait_for(hold.reached.wait(), 10)
    await enrol_app(env, member, clock)
    hold.released.set()
    answered = await asyncio.wait_for(login, 30)
    assert (answered.status_code, error_code(answered)) == (401, "mfa_required"), answered.text
