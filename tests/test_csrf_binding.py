"""Dashboard CSRF: signed in, only the token bound to the session is accepted; the anonymous
double-submit token (``sw_csrf`` cookie) only on anonymous forms, and every sign-in drops it.

A planted ``sw_csrf`` cookie (from a sibling subdomain, or a plain-HTTP response an attacker
answered) therefore never becomes a valid token for somebody's session."""

from __future__ import annotations

import httpx

from tests.conftest import Env, Member
from tests.support.data import invitation
from tests.support.mail import mailed_reset_tokens
from tests.support.pages import csrf_of

PLANTED = "planted-by-the-attacker-0123456789abcdef"


def form_token(page: httpx.Response) -> str:
    """The CSRF token of the form on a page that opened."""
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def anonymous_cookie_cleared(response: httpx.Response) -> bool:
    return any(
        header.startswith('sw_csrf=""') or header.startswith("sw_csrf=;")
        for header in response.headers.get_list("set-cookie")
    ) and any("max-age=0" in h.lower() for h in response.headers.get_list("set-cookie"))


async def log_in(client: httpx.AsyncClient, member: Member) -> tuple[str, httpx.Response]:
    """Sign in through the login form: the anonymous token the login form carried, the answer."""
    before = form_token(await client.get("/login"))
    assert client.cookies.get("sw_csrf") == before
    response = await client.post(
        "/login",
        data={
            "csrf_token": before,
            "email": member.email,
            "password": member.password,
            "organisation": str(member.organisation.id),
        },
    )
    assert response.status_code == 303, response.text
    return before, response


async def still_signed_in(client: httpx.AsyncClient) -> bool:
    return (await client.get("/organisation/overview")).status_code == 200


async def logout_with(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """Sign-out is a signed-in form like any other; a refused token leaves the session alone."""
    return await client.post("/logout", data={"csrf_token": token})


def refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and "<code>csrf_refused</code>" in response.text


async def test_a_planted_anonymous_cookie_is_no_token_for_a_session(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, token=False)
    async with env.client_from("198.51.100.21") as browser:
        await log_in(browser, member)
        browser.cookies.set("sw_csrf", PLANTED)
        assert refused(await logout_with(browser, PLANTED))
        assert await still_signed_in(browser)
        # The session-bound token of the page still works.
        signed = form_token(await browser.get("/organisation/overview"))
        assert signed != PLANTED
        assert (await logout_with(browser, signed)).status_code == 303
        assert not await still_signed_in(browser)


async def test_the_pre_login_token_stops_at_login(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, token=False)
    async with env.client_from("198.51.100.22") as browser:
        before, signed_in = await log_in(browser, member)
        assert refused(await logout_with(browser, before))
        assert anonymous_cookie_cleared(signed_in)
        assert browser.cookies.get("sw_csrf") is None
        # Even with the old cookie sent again (a browser that kept it, or an attacker who planted it).
        cookies = f"sw_session={browser.cookies['sw_session']}; sw_csrf={before}"
        assert refused(
            await browser.post("/logout", data={"csrf_token": before}, headers={"Cookie": cookies})
        )
        assert await still_signed_in(browser)
        assert (
            await logout_with(browser, form_token(await browser.get("/organisation/overview")))
        ).status_code == 303
        # Signed out, the next anonymous form gets a fresh anonymous token.
        after = form_token(await browser.get("/login"))
        assert after != before and browser.cookies.get("sw_csrf") == after


async def test_anonymous_forms_take_only_their_own_cookie(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, token=False)
    async with env.client_from("198.51.100.23") as browser:
        token = form_token(await browser.get("/login"))
        form = {"email": member.email, "password": member.password, "organisation": str(org.id)}
        assert refused(await browser.post("/login", data=form | {"csrf_token": PLANTED}))
        assert (await browser.post("/login", data=form | {"csrf_token": token})).status_code == 303


async def test_signing_up_by_invitation_drops_the_anonymous_token(env: Env) -> None:
    org = await env.org()
    _, token = await invitation(env, org)
    async with env.client_from("198.51.100.24") as browser:
        before = form_token(await browser.get(f"/invite/{token}"))
        joined = await browser.post(
            f"/invite/{token}",
            data={
                "csrf_token": before,
                "mode": "signup",
                "email": "newcomer@example.com",
                "password": "newcomer passphrase",
            },
        )
        assert joined.status_code == 303, joined.text
        assert anonymous_cookie_cleared(joined)
        assert await still_signed_in(browser)
        browser.cookies.set("sw_csrf", before)
        assert refused(await logout_with(browser, before))
        assert await still_signed_in(browser)


async def test_a_password_reset_drops_the_anonymous_token(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, token=False)
    async with env.client_from("198.51.100.25") as browser:
        request_form = form_token(await browser.get("/password/reset"))
        sent = await browser.post("/password/reset", data={"csrf_token": request_form, "email": member.email})
        assert sent.status_code == 200
        [reset_token] = mailed_reset_tokens(env)
        form = form_token(await browser.get(f"/password/reset/{reset_token}"))
        done = await browser.post(
            f"/password/reset/{reset_token}",
            data={
                "csrf_token": form,
                "password": "brand new passphrase",
                "password_again": "brand new passphrase",
            },
        )
        assert done.status_code == 303, done.text
        assert anonymous_cookie_cleared(done)
