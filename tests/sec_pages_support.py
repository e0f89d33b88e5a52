"""Driving the dashboard like a browser in the security tests: a client of its own (cookie jar and
client address), sign-in through the login form, CSRF tokens scraped from the pages."""

from __future__ import annotations

import html
import itertools
import re

import httpx

from tests.conftest import Env, Member

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_addresses = itertools.count(1)


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return html.unescape(found.group(1))


def browser(env: Env, address: str | None = None) -> httpx.AsyncClient:
    """A fresh browser; by default from an address of its own, so throttles counting per client
    address do not add up across tests."""
    return env.client_from(address or f"192.0.2.{next(_addresses) % 250 + 1}")


async def signed_in(env: Env, member: Member) -> httpx.AsyncClient:
    client = browser(env)
    login = await client.get("/login")
    assert login.status_code == 200, login.text
    response = await client.post(
        "/login",
        data={
            "csrf_token": csrf_of(login.text),
            "email": member.email,
            "password": member.password,
            "organisation": str(member.organisation.id),
            "next": "/organisation/overview",
        },
    )
    assert response.status_code == 303, response.text
    return client
