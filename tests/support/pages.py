"""The dashboard driven over HTTP like a browser: a client of its own (cookie jar and client address),
sign-in, CSRF tokens scraped from the pages, forms submitted, flashes read.

``signed_in`` puts a directly issued bintu token into the session cookie, which is all a sign-in
leaves in the browser; ``signed_in_through_form`` fills in the login form, for tests of the sign-in
itself and of what it does to the session and CSRF cookies.
"""

from __future__ import annotations

import html
import itertools
import re
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # conftest's fixtures import this module
    from tests.conftest import Env, Member


SESSION_COOKIE = "sw_session"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_addresses = itertools.count(1)


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return html.unescape(found.group(1))


def browser(env: Env, address: str | None = None) -> httpx.AsyncClient:
    """A fresh browser; by default from an address of its own, so throttles counting per client
    address (the login throttle among them) do not add up across tests."""
    return env.client_from(address or f"192.0.2.{next(_addresses) % 250 + 1}")


async def signed_in(env: Env, member: Member, address: str | None = None) -> httpx.AsyncClient:
    """A browser holding a session of ``member``'s own (as a sign-in makes one), issued without the
    login's password check."""
    client = browser(env, address)
    # Filed under the domain the cookie jar gives cookies the server sets (a host without a dot
    # gets ".local"), so that cookies a test sets by hand later come after it, as after a sign-in.
    host = client.base_url.host
    domain = host if "." in host else f"{host}.local"
    client.cookies.set(SESSION_COOKIE, await env.issue_token(member), domain=domain)
    return client


async def signed_in_through_form(
    env: Env, member: Member, address: str | None = None, *, next_page: str = "/organisation/overview"
) -> httpx.AsyncClient:
    """A browser that signed in as ``member`` through the login form."""
    client = browser(env, address)
    login = await client.get("/login")
    assert login.status_code == 200, login.text
    response = await client.post(
        "/login",
        data={
            "csrf_token": csrf_of(login.text),
            "email": member.email,
            "password": member.password,
            "organisation": str(member.organisation.id),
            "next": next_page,
        },
    )
    assert response.status_code == 303, response.text
    assert client.cookies.get(SESSION_COOKIE)
    return client


async def submit(
    client: httpx.AsyncClient, page_url: str, action: str, data: dict[str, Any] | None = None
) -> httpx.Response:
    """Open ``page_url``, then post ``data`` to ``action`` with the CSRF token the page carries."""
    page = await client.get(page_url)
    assert page.status_code == 200, page.text
    return await client.post(action, data={"csrf_token": csrf_of(page.text)} | (data or {}))


def assert_page(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    text = response.text
    # CSP: no inline script, no style attributes.
    assert re.findall(r"<script[^>]*>", text) == [re.search(r'<script src="[^"]+" defer>', text).group(0)]  # type: ignore[union-attr]
    assert " style=" not in text
    return text


def assert_refused(response: httpx.Response, code: str = "forbidden") -> None:
    text = assert_page(response, 403)
    assert f"<code>{code}</code>" in text


def redirected_to(response: httpx.Response, target: str) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"] == target


async def followed(client: httpx.AsyncClient, response: httpx.Response, target: str) -> str:
    """``response`` is a 303 to ``target``: open it as the browser does and return the page."""
    redirected_to(response, target)
    return assert_page(await client.get(target))


# The one-time message the page after a POST's 303 shows (post/redirect/get): its kind decides the
# callout's look and whether assistive technology hears it as status or as an alert.
_FLASH = re.compile(
    r'<div class="notice (notice-\w+) flash" role="(\w+)" data-flash="(\w+)">(.*?)</div>', re.S
)
FLASH_STYLE = {
    "success": ("notice-ok", "status"),
    "info": ("notice-info", "status"),
    "warn": ("notice-warn", "alert"),
    "danger": ("notice-danger", "alert"),
}


def flash_of(page: str) -> tuple[str, str]:
    """The kind and (unescaped) text of the one flash ``page`` shows."""
    found = _FLASH.findall(page)
    assert len(found) == 1, f"expected one flash message, found {found}"
    css, role, kind, text = found[0]
    assert FLASH_STYLE.get(kind) == (css, role), found[0]
    return kind, html.unescape(text)
