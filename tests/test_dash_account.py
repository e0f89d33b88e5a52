"""The basics of one's own account in the dashboard: a way to the password reset from the login page,
a page to change one's password (the service behind PUT /api/user/password), and a welcome after
joining through an invitation."""

from __future__ import annotations

import re

import httpx

from tests.conftest import PASSWORD, Env
from tests.support.pages import browser, csrf_of, signed_in

NEW_PASSWORD = "a-new-and-long-password"


def flash_text(page: str) -> str | None:
    found = re.search(r'<div class="notice [^"]*flash"[^>]*>([^<]*)</div>', page)
    return found.group(1) if found else None


async def test_the_login_page_offers_the_password_reset(env: Env) -> None:
    login = await browser(env).get("/login")
    assert login.status_code == 200
    assert 'href="/password/reset">Forgot your password?</a>' in login.text


async def test_change_password_page_asks_for_the_current_one_and_ends_other_sessions(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")  # every role may change its own password
    other_session = member.headers  # a bintu token from an API login: another session of the account
    page = await signed_in(env, member)

    form = await page.get("/account/password")
    assert form.status_code == 200
    assert 'autocomplete="current-password"' in form.text
    csrf = csrf_of(form.text)

    def fields(current: str, new: str, again: str | None = None) -> dict[str, str]:
        return {
            "csrf_token": csrf,
            "current_password": current,
            "new_password": new,
            "new_password_again": new if again is None else again,
        }

    wrong = await page.post("/account/password", data=fields("not-my-password", NEW_PASSWORD))
    assert wrong.status_code == 400, wrong.text
    assert "The current password is wrong." in wrong.text
    differ = await page.post("/account/password", data=fields(PASSWORD, NEW_PASSWORD, "something-else-1"))
    assert differ.status_code == 400
    assert "The two new passwords differ." in differ.text
    weak = await page.post("/account/password", data=fields(PASSWORD, "short"))
    assert weak.status_code in (400, 422), weak.text
    # Nothing changed so far: the other session still works.
    assert (await env.client.get("/api/organisation", headers=other_session)).status_code == 200

    changed = await page.post("/account/password", data=fields(PASSWORD, NEW_PASSWORD))
    assert changed.status_code == 303, changed.text
    assert changed.headers["location"] == "/organisation/overview"
    overview = await page.get("/organisation/overview")
    assert overview.status_code == 200  # this session stays signed in
    assert "Your password was changed" in (flash_text(overview.text) or "")
    assert flash_text((await page.get("/organisation/overview")).text) is None  # said once
    assert (await env.client.get("/api/organisation", headers=other_session)).status_code == 401
    old = await env.client.post(
        "/api/user/validate", json={"email": member.email, "password": PASSWORD, "organisation": str(org.id)}
    )
    assert old.status_code == 401
    member.password = NEW_PASSWORD
    assert await env.login(member)

    admin = await env.member(org, "nanoAdmin")
    audit = await env.client.get(
        "/api/audit", params={"action": "user.password_changed"}, headers=admin.headers
    )
    assert audit.status_code == 200, audit.text
    assert str(member.id) in audit.text


async def test_change_password_needs_a_session_and_a_csrf_token(env: Env) -> None:
    anonymous = browser(env)
    page = await anonymous.get("/account/password")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
    org = await env.org()
    member = await env.member(org, "nanoUser")
    client = await signed_in(env, member)
    forged = await client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD},
    )
    assert forged.status_code == 403
    assert await env.login(member)  # the password is unchanged


async def test_the_profile_menu_links_to_the_password_page(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoReadOnly")
    page = await signed_in(env, member)
    overview = await page.get("/organisation/overview")
    assert 'href="/account/password"' in overview.text


async def test_a_new_member_is_welcomed_after_accepting_an_invitation(env: Env) -> None:
    org = await env.org("Welcome Org")
    admin = await env.member(org, "nanoAdmin")
    issued = await env.client.post("/api/user/invite", json={"role": "nanoReadOnly"}, headers=admin.headers)
    token = issued.json()["token"]
    visitor: httpx.AsyncClient = browser(env)
    form = await visitor.get(f"/invite/{token}")
    joined = await visitor.post(
        f"/invite/{token}",
        data={
            "csrf_token": csrf_of(form.text),
            "mode": "signup",
            "email": "new@example.com",
            "password": PASSWORD,
        },
    )
    assert joined.status_code == 303 and joined.headers["location"] == "/organisation/overview"
    overview = await visitor.get("/organisation/overview")
    assert overview.status_code == 200
    assert flash_text(overview.text) == "Welcome to Welcome Org! You joined as Observer (nanoReadOnly)."


async def test_a_completed_password_reset_says_so_on_the_login_page(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, "nanoUser")
    async with env.runtime.database.session() as session:
        from streamward.authn import password_changes

        message = await password_changes.request_password_reset(
            session,
            env.runtime.login_throttle,
            email=member.email,
            client_address="198.51.100.7",
            base_url="http://t",
        )
        await session.commit()
    assert message is not None
    link = re.search(r"/password/reset/(\S+)", message.body)
    assert link
    token = link.group(1)
    visitor = browser(env)
    form = await visitor.get(f"/password/reset/{token}")
    done = await visitor.post(
        f"/password/reset/{token}",
        data={"csrf_token": csrf_of(form.text), "password": NEW_PASSWORD, "password_again": NEW_PASSWORD},
    )
    assert done.status_code == 303 and done.headers["location"] == "/login"
    login = await visitor.get("/login")
    assert "Your password was changed" in (flash_text(login.text) or "")
