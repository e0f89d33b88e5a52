"""Rate limits kept in Redis (``STREAMWARD_REDIS_URL``): the same bucket semantics as the in-process
buckets (the same tests run over both), atomic under concurrency, keys that hide emails and expire
by themselves, and a fail-closed answer (503 ``rate_limit_unavailable``) when Redis is unreachable.

Cross-process behaviour with real ``streamward serve`` processes is in ``test_multiprocess.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamward.limits import (
    Limits,
    LocalLimits,
    RateLimitUnavailable,
    RedisLimits,
    unshared_limits_warning,
)
from tests.conftest import TEST_SECRET, Env, make_settings
from tests.support.data import audit_entries, invitation
from tests.support.pages import browser, csrf_of
from tests.support.redis_store import (
    REDIS_UP,
    REDIS_URL,
    closed_port_url,
    drop_keys,
    needs_redis,
    new_prefix,
    pttl,
    redis_keys,
)

UNREACHABLE_REDIS = closed_port_url()
UNKNOWN_RESET = "swr_" + "A" * 43


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def limits(request: pytest.FixtureRequest) -> AsyncIterator[Limits]:
    if request.param == "memory":
        yield LocalLimits()
        return
    prefix = new_prefix()
    shared = RedisLimits(REDIS_URL, secret_key=TEST_SECRET.encode(), prefix=prefix)
    try:
        yield shared
    finally:
        await shared.aclose()
        drop_keys(prefix)


# --- one semantics, two stores ------------------------------------------------------------------


async def test_a_bucket_grants_its_capacity_then_refuses_with_the_wait_for_one_token(limits: Limits) -> None:
    buckets = limits.buckets("test-capacity", 3, 60)  # one token every 20 s
    assert [await buckets.take("198.51.100.1") for _ in range(3)] == [None, None, None]
    assert await buckets.take("198.51.100.1") == 20
    assert await buckets.retry_after("198.51.100.1") == 20
    # Other keys, and the same key in another budget, are untouched.
    assert await buckets.take("198.51.100.2") is None
    assert await limits.buckets("test-other", 1, 60).take("198.51.100.1") is None


async def test_looking_spends_nothing_and_a_refusal_spends_nothing(limits: Limits) -> None:
    buckets = limits.buckets("test-look", 2, 60)
    assert [await buckets.retry_after("k") for _ in range(5)] == [None] * 5
    assert [await buckets.take("k") for _ in range(2)] == [None, None]
    refusals = [await buckets.take("k") for _ in range(5)]
    # Each refusal names the same wait for the same one token: refused attempts dug no deeper.
    assert refusals == [30] * 5


async def test_a_bucket_refills_continuously(limits: Limits) -> None:
    buckets = limits.buckets("test-refill", 2, 1.0)  # one token every 500 ms
    assert [await buckets.take("k") for _ in range(2)] == [None, None]
    assert await buckets.take("k") == 1  # less than a second: Retry-After says 1
    await asyncio.sleep(0.6)
    assert await buckets.take("k") is None
    await asyncio.sleep(1.2)  # refilled to the capacity, never beyond it
    assert [await buckets.take("k") for _ in range(3)] == [None, None, 1]


async def test_a_budget_changed_on_a_live_instance_applies_at_once(limits: Limits) -> None:
    buckets = limits.buckets("test-change", 10, 60)
    buckets.capacity = 1
    assert await buckets.take("k") is None
    assert await buckets.take("k") == 6  # the rate is still 10 per 60 s


async def test_a_mark_is_new_once_per_key_and_window(limits: Limits) -> None:
    assert await limits.first_time("test-mark", "a", 0.5) is True
    assert await limits.first_time("test-mark", "a", 0.5) is False
    assert await limits.first_time("test-mark", "b", 0.5) is True
    assert await limits.first_time("test-other", "a", 0.5) is True
    await asyncio.sleep(0.7)
    assert await limits.first_time("test-mark", "a", 0.5) is True


# --- Redis only ---------------------------------------------------------------------------------


@needs_redis
async def test_fifty_concurrent_takes_from_two_clients_grant_exactly_the_capacity() -> None:
    prefix = new_prefix()
    # Two clients with connection pools of their own, as two processes would have.
    first = RedisLimits(REDIS_URL, secret_key=TEST_SECRET.encode(), prefix=prefix)
    second = RedisLimits(REDIS_URL, secret_key=TEST_SECRET.encode(), prefix=prefix)
    try:
        budgets = [first.buckets("test-race", 10, 3600), second.buckets("test-race", 10, 3600)]
        results = await asyncio.gather(*(budgets[i % 2].take("203.0.113.9") for i in range(50)))
        assert sum(1 for wait in results if wait is None) == 10
        assert all(wait is None or wait >= 1 for wait in results)
    finally:
        await first.aclose()
        await second.aclose()
        drop_keys(prefix)


@needs_redis
async def test_redis_keys_hide_the_email_and_expire_when_the_bucket_is_full_again() -> None:
    prefix = new_prefix()
    shared = RedisLimits(REDIS_URL, secret_key=TEST_SECRET.encode(), prefix=prefix)
    try:
        failures = shared.buckets("login-account-failures", 10, 300)  # one token every 30 s
        await failures.take("alice@example.com")
        assert await shared.first_time("login-refused", "203.0.113.5|alice@example.com", 20) is True
        keys = redis_keys(prefix)
        assert len(keys) == 2
        assert not any("alice" in key or "example" in key or "203.0.113" in key for key in keys)
        bucket_key = shared.redis_key("login-account-failures", "alice@example.com")
        mark_key = shared.redis_key("login-refused", "203.0.113.5|alice@example.com")
        assert set(keys) == {bucket_key, mark_key}
        # Gone once one token is back (the bucket is full then), and the mark after its window.
        assert 0 < pttl(bucket_key) <= 30_000
        assert 0 < pttl(mark_key) <= 20_000
        # Another secret key names the same bucket differently: a guessed email cannot be confirmed
        # by hashing it without the secret key.
        other = RedisLimits(REDIS_URL, secret_key=b"another-secret-key-0123456789abcdefghij", prefix=prefix)
        assert other.redis_key("login-account-failures", "alice@example.com") != bucket_key
        await other.aclose()
    finally:
        await shared.aclose()
        drop_keys(prefix)


async def test_unreachable_redis_refuses_every_call_with_503() -> None:
    shared = RedisLimits(UNREACHABLE_REDIS, secret_key=TEST_SECRET.encode())
    try:
        buckets = shared.buckets("test-dead", 10, 60)
        for call in (buckets.take("k"), buckets.retry_after("k"), shared.first_time("test-dead", "k", 5)):
            with pytest.raises(RateLimitUnavailable) as refused:
                await call
            assert (refused.value.status_code, refused.value.code) == (503, "rate_limit_unavailable")
            assert int((refused.value.headers or {})["Retry-After"]) >= 1
        assert await shared.ping() is False
    finally:
        await shared.aclose()


# --- through the application --------------------------------------------------------------------


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """``unreachable``: STREAMWARD_REDIS_URL points at a closed port. Otherwise the test Redis with a
    key prefix of the test's own and small login budgets."""
    if getattr(request, "param", None) == "unreachable":
        yield {"redis_url": UNREACHABLE_REDIS}
        return
    if not REDIS_UP:
        pytest.skip(needs_redis.kwargs["reason"])
    prefix = new_prefix()
    yield {"redis_url": REDIS_URL, "redis_key_prefix": prefix, "login_rate_per_ip": 3}
    drop_keys(prefix)


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    if response.headers["content-type"].startswith("application/json"):
        assert response.json()["error"]["code"] == "rate_limit_unavailable"
    else:
        assert "rate_limit_unavailable" in response.text or "Rate limits cannot be checked" in response.text


@pytest.mark.parametrize("settings_overrides", ["unreachable"], indirect=True)
async def test_with_redis_unreachable_limited_routes_fail_closed_and_the_rest_works(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, token=False)
    _, invite_token = await invitation(env, org)
    for _ in range(3):  # never a 500, never a pass: not once
        login = await env.client.post(
            "/api/user/validate", json={"email": admin.email, "password": admin.password}
        )
        _assert_unavailable(login)
    _assert_unavailable(await env.client.post("/api/user/password/reset", json={"email": admin.email}))
    _assert_unavailable(await env.client.post("/api/user/password", json={"email": admin.email}))
    _assert_unavailable(
        await env.client.post(f"/api/user/password/reset/{UNKNOWN_RESET}", json={"password": "a new pass 77"})
    )
    _assert_unavailable(await env.client.get(f"/api/invite/{invite_token}"))
    _assert_unavailable(
        await env.client.post(
            f"/api/invite/{invite_token}/accept",
            json={"email": "new@example.com", "password": "a new pass 77"},
        )
    )
    checked = await env.client.post("/api/apikey", json={"apikey": org.api_key})
    _assert_unavailable(checked)
    assert checked.json()["error"]["userinfo"]["apikey"].endswith("****")  # the SDK's shape kept

    visitor = browser(env)
    async with visitor:
        _assert_unavailable(await visitor.get(f"/invite/{invite_token}"))
        page = await visitor.get("/login")
        signed = await visitor.post(
            "/login",
            data={"csrf_token": csrf_of(page.text), "email": admin.email, "password": admin.password},
        )
        assert signed.status_code == 503
        assert "sw_session" not in "".join(signed.headers.get_list("set-cookie"))

    # Only the limited routes depend on Redis: the API key still works everywhere else.
    assert (await env.client.get("/api/organisation", headers=org.api_headers)).status_code == 200


@needs_redis
async def test_over_redis_a_login_flood_is_limited_and_audited_once(env: Env) -> None:
    assert env.runtime.limits.shared
    # Connected first: on a busy machine (CI's other worker hashing passwords) opening the first
    # connection can outlast the 0.25 s timeout, and the limits then fail closed for a second by
    # design (test_with_redis_unreachable_limited_routes_fail_closed...); not what this test is about.
    for _ in range(50):
        if await env.runtime.limits.ping():
            break
        await asyncio.sleep(0.1)
    statuses = []
    for _ in range(6):
        response = await env.client.post(
            "/api/user/validate", json={"email": "x@example.com", "password": "wrong-password"}
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429, 429]
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) == 20  # 3 per 60 s
    reasons = [e.after for e in await audit_entries(env, action="user.login_failed")]
    assert reasons.count({"reason": "rate_limited"}) == 1
    assert reasons.count({"reason": "invalid_credentials"}) == 3
    prefix = env.settings.redis_key_prefix
    assert redis_keys(prefix) and not any("x@example.com" in key for key in redis_keys(prefix))


@needs_redis
async def test_over_redis_api_key_checks_have_their_own_budget(env: Env) -> None:
    org = await env.org()
    statuses = [
        (await env.client.post("/api/apikey", json={"apikey": org.api_key})).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    # A budget of its own: logins from the same address are not spent by key checks.
    login = await env.client.post(
        "/api/user/validate", json={"email": "y@example.com", "password": "wrong-pw"}
    )
    assert login.status_code == 401


def test_serve_warns_about_several_workers_only_without_redis(tmp_path: Path) -> None:
    postgres = make_settings("postgresql://postgres@127.0.0.1/x", tmp_path)
    assert unshared_limits_warning(postgres, 1) is None
    warning = unshared_limits_warning(postgres, 4)
    assert warning and "STREAMWARD_REDIS_URL" in warning and "4 times" in warning
    shared = make_settings("postgresql://postgres@127.0.0.1/x", tmp_path, redis_url=REDIS_URL)
    assert unshared_limits_warning(shared, 4) is None
