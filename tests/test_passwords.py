"""Passwords: change one's own (ends the other sessions), reset by email (same answer for any address;
single-use link valid one hour), the policy. Mail goes through the console backend here (files
under var_dir/mail); tests/test_mail_smtp.py covers SMTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from streamward import passwords
from streamward.authn import service as authn_service
from streamward.authn.models import PasswordReset
from streamward.db import utcnow
from streamward.invites import acceptance
from streamward.users.models import Account
from tests.conftest import PASSWORD, Env
from tests.support.data import audit_entries, invitation
from tests.support.interleave import Hold, one_then_other, refused_now
from tests.support.mail import filed_mails, mailed_reset_links, reset_link

NEW_PASSWORD = "a completely new passphrase"


async def login_status(env: Env, email: str, password: str) -> int:
    response = await env.client.post("/api/user/validate", json={"email": email, "password": password})
    return response.status_code


async def test_change_password_ends_every_other_session_of_the_account(env: Env) -> None:
    org, other_org = await env.org(), await env.org()
    user = await env.member(org, "nanoUser", email="changer@example.com")
    elsewhere = await env.member(other_org, "nanoReadOnly", email="changer@example.com")
    second_token = await env.issue_token(user)
    response = await env.client.put(
        "/api/user/password",
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
        headers=user.headers,
    )
    assert response.status_code == 204, response.text
    assert (await env.client.get("/api/organisation", headers=user.headers)).status_code == 200
    for ended in ({"X-BINTU-TOKEN": second_token}, elsewhere.headers):
        assert (await env.client.get("/api/organisation", headers=ended)).status_code == 401
    assert await login_status(env, user.email, PASSWORD) == 401
    assert (
        await env.client.post(
            "/api/user/validate",
            json={"email": user.email, "password": NEW_PASSWORD, "organisation": str(org.id)},
        )
    ).status_code == 200
    [entry] = await audit_entries(env, action="user.password_changed")
    assert (entry.target_id, entry.after) == (str(user.id), {"otherSessionsEnded": 2})


async def test_change_password_refusals(env: Env) -> None:
    org = await env.org()
    user = await env.member(org, "nanoUser")
    cases = [
        ({"currentPassword": "not my password", "newPassword": NEW_PASSWORD}, 400, "wrong_password"),
        ({"currentPassword": PASSWORD, "newPassword": "short"}, 400, "weak_password"),
        ({"currentPassword": PASSWORD, "newPassword": "x" * 129}, 400, "weak_password"),
        ({"currentPassword": PASSWORD, "newPassword": "Password123"}, 400, "weak_password"),
        ({"currentPassword": PASSWORD}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = await env.client.put("/api/user/password", json=body, headers=user.headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    keyed = await env.client.put(
        "/api/user/password",
        json={"currentPassword": "x", "newPassword": NEW_PASSWORD},
        headers=org.api_headers,
    )
    assert (keyed.status_code, keyed.json()["error"]["code"]) == (400, "not_a_session")
    assert await login_status(env, user.email, PASSWORD) == 200  # unchanged


async def test_guessing_the_current_password_is_throttled_like_logins(env: Env) -> None:
    env.runtime.login_throttle.failures_per_account.capacity = 2
    org = await env.org()
    user = await env.member(org, "nanoUser")
    statuses = [
        (
            await env.client.put(
                "/api/user/password",
                json={"currentPassword": f"guess number {i}", "newPassword": NEW_PASSWORD},
                headers=user.headers,
            )
        ).status_code
        for i in range(3)
    ]
    assert statuses == [400, 400, 429]


async def test_passwords_are_used_whole_without_truncation(env: Env) -> None:
    org = await env.org()
    user = await env.member(org, "nanoUser")
    long_password = "l" * 100 + "-end"  # beyond bcrypt's 72 bytes, say
    response = await env.client.put(
        "/api/user/password",
        json={"currentPassword": PASSWORD, "newPassword": long_password},
        headers=user.headers,
    )
    assert response.status_code == 204
    assert await login_status(env, user.email, long_password[:72]) == 401
    assert await login_status(env, user.email, long_password) == 200


async def test_reset_request_answers_the_same_for_any_email(env: Env) -> None:
    org = await env.org()
    user = await env.member(org, "nanoUser", email="forgetful@example.com")
    known = await env.client.post("/api/user/password/reset", json={"email": "Forgetful@Example.com"})
    unknown = await env.client.post("/api/user/password/reset", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    [(link, token)] = mailed_reset_links(env)
    assert link == f"{env.settings.base_url}/password/reset/{token}"
    [mail] = filed_mails(env)
    assert mail["To"] == "forgetful@example.com"
    # Stored only as its SHA-256, valid for one hour.
    async with env.runtime.database.session(write=False) as session:
        [reset] = (await session.execute(select(PasswordReset))).scalars().all()
    assert token not in (reset.token_hash, str(reset.id))
    assert reset.expires_at - reset.created_at == timedelta(hours=1)
    [entry] = await audit_entries(env, action="user.password_reset_requested")
    assert (entry.organisation_id, entry.target_id) == (org.id, str(user.id))
    # A second request moments later sends nothing new (no inbox flooding), and still answers the same.
    again = await env.client.post("/api/user/password/reset", json={"email": "forgetful@example.com"})
    assert (again.status_code, again.json()) == (202, known.json())
    assert len(mailed_reset_links(env)) == 1


async def test_reset_link_sets_a_new_password_once_and_ends_every_session(env: Env) -> None:
    org = await env.org()
    user = await env.member(org, "nanoUser", email="resetter@example.com")
    await env.client.post("/api/user/password/reset", json={"email": user.email})
    [(_, token)] = mailed_reset_links(env)

    weak = await env.client.post(f"/api/user/password/reset/{token}", json={"password": "12345678"})
    assert (weak.status_code, weak.json()["error"]["code"]) == (400, "weak_password")  # link still usable
    done = await env.client.post(f"/api/user/password/reset/{token}", json={"password": NEW_PASSWORD})
    assert done.status_code == 204, done.text
    assert (await env.client.get("/api/organisation", headers=user.headers)).status_code == 401
    assert await login_status(env, user.email, PASSWORD) == 401
    assert await login_status(env, user.email, NEW_PASSWORD) == 200

    reused = await env.client.post(
        f"/api/user/password/reset/{token}", json={"password": "yet another passphrase"}
    )
    assert (reused.status_code, reused.json()["error"]["code"]) == (400, "reset_link_invalid")
    unknown = await env.client.post("/api/user/password/reset/swr_nope", json={"password": NEW_PASSWORD})
    assert unknown.json() == reused.json()
    [entry] = await audit_entries(env, action="user.password_reset")
    assert (entry.actor, entry.target_id) == (f"user:{user.id}", str(user.id))


async def test_reset_link_expires_after_an_hour(env: Env) -> None:
    org = await env.org()
    user = await env.member(org, "nanoUser")
    await env.client.post("/api/user/password/reset", json={"email": user.email})
    [(_, token)] = mailed_reset_links(env)
    async with env.runtime.database.session() as session:
        await session.execute(
            update(PasswordReset).values(
                created_at=utcnow() - timedelta(minutes=61), expires_at=utcnow() - timedelta(minutes=1)
            )
        )
        await session.commit()
    late = await env.client.post(f"/api/user/password/reset/{token}", json={"password": NEW_PASSWORD})
    assert (late.status_code, late.json()["error"]["code"]) == (400, "reset_link_invalid")
    assert await login_status(env, user.email, PASSWORD) == 200


async def test_changing_the_password_retires_outstanding_reset_links(env: Env) -> None:
    org = await env.org()
    user = await env.member(org, "nanoUser")
    await env.client.post("/api/user/password/reset", json={"email": user.email})
    [(_, token)] = mailed_reset_links(env)
    await env.client.put(
        "/api/user/password",
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
        headers=user.headers,
    )
    stale = await env.client.post(
        f"/api/user/password/reset/{token}", json={"password": "attacker passphrase"}
    )
    assert stale.status_code == 400
    assert await login_status(env, user.email, NEW_PASSWORD) == 200


@pytest.mark.parametrize("how", ["change", "reset"])
async def test_a_login_under_way_does_not_outlive_a_new_password(
    env: Env, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A login that has read the account and is verifying the old password while its owner changes
    it (or resets it by mail): the change ends the session that login makes too (on PostgreSQL the
    login holds a share lock on the account row, which the change's update waits for; on SQLite its
    write lock). That session used to be inserted after the change had ended "every other session",
    and outlived it."""
    org = await env.org()
    owner = await env.member(org, "nanoUser", email="owner@example.com")
    if how == "reset":
        link = await reset_link(env, owner.email)
    hold = Hold(monkeypatch, authn_service, "verify_password")
    login = env.client.post("/api/user/validate", json={"email": owner.email, "password": PASSWORD})
    if how == "change":
        body = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
        change = env.client.put("/api/user/password", json=body, headers=owner.headers)
    else:
        change = env.client.post(f"/api/user/password/reset/{link}", json={"password": NEW_PASSWORD})
    logged_in, changed = await one_then_other(hold, login, change)
    assert changed.status_code == 204, changed.text
    await refused_now(env, logged_in)  # committed first, the login's session was ended by the change
    kept = 200 if how == "change" else 401  # a change keeps the session it was made with
    assert (await env.client.get("/api/organisation", headers=owner.headers)).status_code == kept


async def test_logins_rehash_an_old_hash_once_even_when_they_run_together(env: Env) -> None:
    """A hash made with older parameters is replaced at the next login. Logins of one account share
    the account row's lock (above): two that both upgraded it to write would deadlock, so a login
    rehashes only when no other holds the row, and concurrent logins all succeed."""
    org = await env.org()
    member = await env.member(org, "nanoUser", email="old-hash@example.com")
    weaker = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    async with env.runtime.database.session() as session:
        await session.execute(
            update(Account).where(Account.id == member.account.id).values(password_hash=weaker.hash(PASSWORD))
        )
        await session.commit()
    body = {"email": member.email, "password": PASSWORD}
    together = await asyncio.gather(*(env.client.post("/api/user/validate", json=body) for _ in range(4)))
    assert [response.status_code for response in together] == [200] * 4
    assert (await env.client.post("/api/user/validate", json=body)).status_code == 200
    async with env.runtime.database.session(write=False) as session:
        stored = (
            await session.execute(select(Account.password_hash).where(Account.id == member.account.id))
        ).scalar_one()
    assert not passwords.needs_rehash(stored)
    assert passwords._hasher.verify(stored, PASSWORD)


async def test_removing_a_member_while_they_log_in_is_no_deadlock(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login holds its account's share lock while it verifies; the removal waits for it (it locks
    the account before the membership) and takes the login's new session with the membership. In
    the other order each waited for the other: PostgreSQL ended one of them with a 500."""
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    leaving = await env.member(org, "nanoUser", email="leaving@example.com")
    hold = Hold(monkeypatch, authn_service, "verify_password")
    login = env.client.post("/api/user/validate", json={"email": leaving.email, "password": PASSWORD})
    removal = env.client.delete(f"/api/user/{leaving.id}", headers=admin.headers)
    logged_in, removed = await one_then_other(hold, login, removal)
    assert removed.status_code == 204, removed.text
    await refused_now(env, logged_in)


@pytest.mark.parametrize("made_by", ["named token", "joining with one's token"])
async def test_a_token_made_from_a_session_does_not_outlive_a_reset_under_way(
    env: Env, monkeypatch: pytest.MonkeyPatch, made_by: str
) -> None:
    """A named token, or the token of a membership joined with one's bintu token, being made while
    the password is reset: the reset waits for it (the request holds its account's share lock once
    it has checked its own session is still valid) and ends it with every other session."""
    org, other = await env.org(), await env.org()
    member = await env.member(org, "nanoAdmin", email="victim@example.com")
    link = await reset_link(env, member.email)
    if made_by == "named token":
        target: Any = authn_service
        name = "issue_token"
        request = env.client.post(
            "/api/bintu/token", json={"name": "ci", "expiresInDays": 30}, headers=member.headers
        )
    else:
        target, name = acceptance, "lock_organisation"
        _, invite = await invitation(env, other)
        request = env.client.post(f"/api/invite/{invite}/accept", headers=member.headers)
    hold = Hold(monkeypatch, target, name)
    reset = env.client.post(f"/api/user/password/reset/{link}", json={"password": NEW_PASSWORD})
    made_response, reset_response = await one_then_other(hold, request, reset)
    assert reset_response.status_code == 204, reset_response.text
    await refused_now(env, made_response)
