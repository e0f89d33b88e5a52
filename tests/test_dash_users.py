"""The User management pages over HTTP, as a browser drives them: every POST answers 303 to a GET
page that says once, in a flash, what happened (nothing rides on ``?done=``); refusals from a dialog
come back to the page with a danger flash; a forged flash cookie says nothing; an invitation's link
is shown once on the page the POST redirects to and never travels in a URL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from html import escape, unescape

import httpx
import pytest

from streamward.dashboard.flash import FLASH_COOKIE
from streamward.users.models import Membership
from tests.conftest import Env
from tests.support.data import audit_entries, count, custom_role, role_of
from tests.support.pages import csrf_of, redirected_to, signed_in, submit

FLASH = re.compile(
    r'<div class="notice (notice-\w+) flash" role="(\w+)" data-flash="(\w+)">(.*?)</div>', re.S
)


def flashes(page: str) -> list[tuple[str, str, str, str]]:
    return [(css, role, kind, unescape(text)) for css, role, kind, text in FLASH.findall(page)]


@pytest.fixture
async def opened() -> AsyncIterator[Callable[[httpx.AsyncClient], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def keep(client: httpx.AsyncClient) -> httpx.AsyncClient:
        clients.append(client)
        return client

    yield keep
    for client in clients:
        await client.aclose()


async def test_role_change_redirects_to_a_get_page_that_says_so_once(env: Env, opened: Callable) -> None:  # type: ignore[type-arg]
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    operator = await env.member(org, "nanoUser", email="operator@example.com")
    browser = opened(await signed_in(env, admin))
    user_url = f"/organisation/users/{operator.id}"

    response = await submit(browser, user_url, f"{user_url}/permission", {"role": "nanoReadOnly"})
    redirected_to(response, user_url)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{FLASH_COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/" in cookie and "Secure" not in cookie  # plain HTTP here; Secure over HTTPS

    shown = await browser.get(user_url)
    assert flashes(shown.text) == [
        (
            "notice-ok",
            "status",
            "success",
            "operator@example.com is now Observer (nanoReadOnly). "
            "Their bintu tokens were ended; the new rights apply at once.",
        )
    ]
    assert f'{FLASH_COOKIE}=""' in shown.headers["set-cookie"]  # said once: the page clears it
    assert flashes((await browser.get(user_url)).text) == []  # a reload says nothing again
    assert await role_of(env, operator.id) == "nanoReadOnly"


async def test_confirming_the_current_role_says_nothing_changed_and_audits_nothing(
    env: Env,
    opened: Callable,  # type: ignore[type-arg]
) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    operator = await env.member(org, "nanoUser", email="same@example.com")
    browser = opened(await signed_in(env, admin))
    user_url = f"/organisation/users/{operator.id}"

    response = await submit(browser, user_url, f"{user_url}/permission", {"role": "nanoUser"})
    redirected_to(response, user_url)
    [(css, role, kind, text)] = flashes((await browser.get(user_url)).text)
    assert (css, role, kind) == ("notice-info", "status", "info")
    assert text == "Nothing was changed: same@example.com already is Operator (nanoUser)."
    assert "ended" not in text
    assert await audit_entries(env, action="user.role_changed") == []
    # The operator's token still works: nothing ended it.
    assert (await env.client.get("/api/user", headers=operator.headers)).status_code == 200


async def test_refusals_from_user_dialogs_return_to_the_user_page_with_a_danger_flash(
    env: Env,
    opened: Callable,  # type: ignore[type-arg]
) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin", email="only-admin@example.com")
    await env.member(org, "nanoUser")
    browser = opened(await signed_in(env, admin))
    own_url = f"/organisation/users/{admin.id}"

    # Deleting the last admin (409 last_admin): back on the user page, saying why, nothing deleted.
    response = await submit(browser, own_url, f"{own_url}/delete")
    redirected_to(response, own_url)
    page = await browser.get(own_url)
    assert page.status_code == 200
    [(css, role, kind, text)] = flashes(page.text)
    assert (css, role, kind) == ("notice-danger", "alert", "danger")
    assert "at least one Administrator (nanoAdmin)" in text and "Nothing was changed" in text
    assert await count(env, Membership, id=admin.id) == 1

    # Demoting oneself as the last admin: the same, from the Update permission dialog.
    response = await submit(browser, own_url, f"{own_url}/permission", {"role": "nanoUser"})
    redirected_to(response, own_url)
    assert flashes((await browser.get(own_url)).text)[0][2] == "danger"
    assert await role_of(env, admin.id) == "nanoAdmin"

    # From the users list (back=list), a refusal returns to the list.
    response = await submit(browser, "/organisation/users", f"{own_url}/delete", {"back": "list"})
    redirected_to(response, "/organisation/users")

    # A user that does not exist (deleted meanwhile): back to the list, not to a 404.
    gone = "/organisation/users/00000000-0000-4000-8000-000000000000"
    response = await submit(browser, "/organisation/users", f"{gone}/delete")
    redirected_to(response, "/organisation/users")
    assert "No such user" in flashes((await browser.get("/organisation/users")).text)[0][3]


async def test_a_forged_or_foreign_flash_cookie_says_nothing(env: Env, opened: Callable) -> None:  # type: ignore[type-arg]
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    other = await env.member(org, "nanoUser")
    browser = opened(await signed_in(env, admin))
    user_url = f"/organisation/users/{other.id}"
    response = await submit(browser, user_url, f"{user_url}/token-reset")
    redirected_to(response, user_url)
    genuine = browser.cookies.get(FLASH_COOKIE)
    assert genuine and "token" not in genuine  # sealed: its text cannot be read on the way

    # Altered by one character: it no longer opens.
    altered = genuine[:-2] + ("A" if genuine[-2] != "A" else "B") + genuine[-1]
    for forged in (altered, "v1.bm90IGEgZmxhc2g", '{"kind":"success","text":"You won"}'):
        browser.cookies.set(FLASH_COOKIE, forged)
        page = await browser.get(user_url)
        assert flashes(page.text) == [], forged
        assert f'{FLASH_COOKIE}=""' in page.headers["set-cookie"]  # and it is cleared

    # A genuine flash of this session, carried into another browser session: it does not open there.
    second = opened(await signed_in(env, admin))
    second.cookies.set(FLASH_COOKIE, genuine)
    assert flashes((await second.get(user_url)).text) == []
    # In its own session it opens, once.
    browser.cookies.set(FLASH_COOKIE, genuine)
    assert "The token of" in flashes((await browser.get(user_url)).text)[0][3]


async def test_an_invitation_link_is_shown_once_after_the_redirect_with_the_role_kept(
    env: Env,
    opened: Callable,  # type: ignore[type-arg]
) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    await custom_role(env, org, "streamOps", {"stream:read", "stream:create"}, "Runs streams")
    browser = opened(await signed_in(env, admin))
    form = await browser.get("/organisation/users")
    response = await browser.post(
        "/organisation/users/invite",
        data={
            "csrf_token": csrf_of(form.text),
            "back": "users",
            "role": "streamOps",
            "email": "",
            "expires_in_days": "3",
        },
    )
    redirected_to(response, "/organisation/users")  # the token is not in the URL
    sealed_cookie = response.headers["set-cookie"]

    page = (await browser.get("/organisation/users")).text
    [(_, _, kind, text)] = flashes(page)
    assert kind == "success" and "shown only this once" in text
    link = re.search(r'id="invite-link" type="text" readonly value="([^"]+)"', page)
    assert link and "/invite/swi_" in link.group(1)
    result = page[page.index('id="link-title"') : page.index("</section>", page.index('id="link-title"'))]
    assert result.count("streamOps") == 1  # the role once, by its label (a custom role: its name)
    assert len(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", result)) == 1  # the expiry once
    # The dialog's form keeps the role the link was made for.
    assert re.search(r'<option value="streamOps" selected>streamOps</option>', page)
    assert '<option value="nanoUser" selected>' not in page

    # The link works (once) and is not shown again.
    token = unescape(link.group(1)).rsplit("/", 1)[1]
    # Nor was it readable in the cookie that carried it across the redirect. (The token itself: its
    # "swi_" prefix may turn up by chance in the sealed cookie's random base64.)
    assert token not in sealed_cookie and token.removeprefix("swi_") not in sealed_cookie
    assert (await env.client.get(f"/invite/{token}")).status_code == 200
    again = (await browser.get("/organisation/users")).text
    assert 'id="invite-link"' not in again and flashes(again) == []

    # The fallback page (no JavaScript) shows its own result on itself.
    form = await browser.get("/organisation/users/invite")
    response = await browser.post(
        "/organisation/users/invite",
        data={"csrf_token": csrf_of(form.text), "role": "nanoReadOnly", "expires_in_days": "7"},
    )
    redirected_to(response, "/organisation/users/invite")
    page = (await browser.get("/organisation/users/invite")).text
    assert 'id="invite-link"' in page and "Observer (nanoReadOnly)" in page
    assert '<option value="nanoReadOnly" selected>' in page


async def test_the_users_table_marks_you_and_protects_the_sole_admin(
    env: Env,
    opened: Callable,  # type: ignore[type-arg]
) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin", email="me@example.com")
    await env.member(org, "nanoUser", email="alice@example.com")
    browser = opened(await signed_in(env, admin))
    page = (await browser.get("/organisation/users")).text
    assert "btn-danger" not in page.split("<dialog")[0]  # no wall of red: quiet buttons open dialogs
    assert 'aria-label="Delete user alice@example.com"' in page
    assert 'aria-label="Reset user token of alice@example.com"' in page
    own_row = page[page.index(">me@example.com</a>") :].split("</tr>")[0]
    assert '<span class="badge badge-you">You</span>' in own_row
    assert re.search(
        r'<button class="btn btn-small btn-quiet-danger" type="button" disabled title="[^"]+"', own_row
    )
    assert f'id="delete-{admin.id}"' not in page  # no dialog behind a disabled button
    assert 'aria-describedby="sole-admin-note"' in own_row and 'id="sole-admin-note"' in page

    # With a second admin, either may be deleted.
    await env.member(org, "nanoAdmin", email="second@example.com")
    page = (await browser.get("/organisation/users")).text
    assert "disabled" not in page.split("<dialog")[0] and f'id="delete-{admin.id}"' in page
    # Roles are named one way: title first, name second.
    assert "Operator (nanoUser)" in page and escape("Administrator (nanoAdmin)") in page


async def test_dashboard_actions_audit_the_client_address(env: Env) -> None:
    """The dashboard's viewer is built like the API's principal: its audit entries carry the address
    (they carried none)."""
    org = await env.org()
    admin = await env.member(org, "nanoAdmin")
    other = await env.member(org, "nanoUser")
    browser = env.client_from("198.51.100.23")
    login = await browser.get("/login")
    signed_in = await browser.post(
        "/login",
        data={
            "csrf_token": csrf_of(login.text),
            "email": admin.email,
            "password": admin.password,
            "organisation": str(org.id),
            "next": "/organisation/overview",
        },
    )
    assert signed_in.status_code == 303, signed_in.text
    page = await browser.get(f"/organisation/users/{other.id}")
    reset = await browser.post(
        f"/organisation/users/{other.id}/token-reset", data={"csrf_token": csrf_of(page.text)}
    )
    assert reset.status_code == 303, reset.text
    entries = await audit_entries(env, action="user.token_reset")
    assert [e.client_address for e in entries] == ["198.51.100.23"]
    await browser.aclose()
