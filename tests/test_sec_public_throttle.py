"""Per client address budgets of the public link routes: an invitation's preview and acceptance (API
and dashboard) and setting a password with a reset link (API and dashboard). Past the budget: 429
``rate_limited`` with Retry-After, valid link or not; other addresses are not affected."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from streamward.limits import (
    INVITE_ATTEMPTS_PER_ADDRESS,
    RESET_COMPLETIONS_PER_ADDRESS,
)
from tests.conftest import Env
from tests.support.data import invitation
from tests.support.pages import browser, csrf_of

UNKNOWN_INVITE = "swi_" + "A" * 43
UNKNOWN_RESET = "swr_" + "A" * 43
PASSWORD = "a brand new passphrase 7"

Attempt = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@pytest.fixture(autouse=True)
def no_refill_while_a_test_runs(env: Env) -> None:
    """The budgets are under test, not their refill (30 a minute gives one back every 2 s, which a
    busy machine spends on the attempts): one an hour here."""
    throttle = env.runtime.link_throttle
    for buckets in (throttle.invitations, throttle.password_resets):
        buckets.rate = 1 / 3600


async def _spend_budget(client: httpx.AsyncClient, attempt: Attempt, budget: int) -> httpx.Response:
    """Make ``budget`` attempts (none refused for their number), then one more: its response."""
    for _ in range(budget):
        response = await attempt(client)
        assert response.status_code not in (429, 500), response.text
    return await attempt(client)


def _assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    if response.headers["content-type"].startswith("application/json"):
        assert response.json()["error"]["code"] == "rate_limited"
    else:
        assert "rate_limited" in response.text


async def test_invitation_preview_and_acceptance_share_a_budget_per_address(env: Env) -> None:
    org = await env.org()
    _, token = await invitation(env, org)
    client = env.client_from("198.51.100.21")
    half = INVITE_ATTEMPTS_PER_ADDRESS // 2
    for _ in range(half):  # valid and unknown links cost alike
        assert (await client.get(f"/api/invite/{token}")).status_code == 200
    for _ in range(INVITE_ATTEMPTS_PER_ADDRESS - half):
        refused = await client.post(
            f"/api/invite/{UNKNOWN_INVITE}/accept", json={"email": "x@example.com", "password": PASSWORD}
        )
        assert refused.status_code == 404, refused.text
    _assert_throttled(await client.get(f"/api/invite/{token}"))
    _assert_throttled(
        await client.post(
            f"/api/invite/{token}/accept", json={"email": "x@example.com", "password": PASSWORD}
        )
    )
    # Another address has its own budget: the invitation still works from there.
    other = env.client_from("198.51.100.22")
    accepted = await other.post(
        f"/api/invite/{token}/accept", json={"email": "x@example.com", "password": PASSWORD}
    )
    assert accepted.status_code == 200, accepted.text
    await client.aclose()
    await other.aclose()


async def test_dashboard_invitation_page_is_throttled(env: Env) -> None:
    org = await env.org()
    _, token = await invitation(env, org)
    visitor = browser(env)
    page = await visitor.get(f"/invite/{token}")
    assert page.status_code == 200
    form = {"csrf_token": csrf_of(page.text), "mode": "signup", "email": "y@example.com", "password": "short"}

    async def submit(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"/invite/{token}", data=form)

    # The page view cost one token already.
    _assert_throttled(await _spend_budget(visitor, submit, INVITE_ATTEMPTS_PER_ADDRESS - 1))
    _assert_throttled(await visitor.get(f"/invite/{token}"))
    await visitor.aclose()


async def test_reset_link_completion_is_throttled_through_the_api(env: Env) -> None:
    client = env.client_from("198.51.100.31")

    async def complete(c: httpx.AsyncClient) -> httpx.Response:
        return await c.post(f"/api/user/password/reset/{UNKNOWN_RESET}", json={"password": PASSWORD})

    _assert_throttled(await _spend_budget(client, complete, RESET_COMPLETIONS_PER_ADDRESS))
    other = env.client_from("198.51.100.32")
    answer = await complete(other)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "reset_link_invalid")
    await client.aclose()
    await other.aclose()


async def test_reset_link_completion_is_throttled_in_the_dashboard(env: Env) -> None:
    visitor = browser(env)
    page = await visitor.get(f"/password/reset/{UNKNOWN_RESET}")
    assert page.status_code == 200
    form = {"csrf_token": csrf_of(page.text), "password": PASSWORD, "password_again": PASSWORD}

    async def submit(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"/password/reset/{UNKNOWN_RESET}", data=form)

    _assert_throttled(await _spend_budget(visitor, submit, RESET_COMPLETIONS_PER_ADDRESS))
    await visitor.aclose()
