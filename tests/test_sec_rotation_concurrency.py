"""Concurrent rotations of an organisation's keys (API key, player key, webhook signing secret).

On PostgreSQL, changing a unique column of ``organisation`` needs the strongest row lock; two
rotations that each hold a weaker lock first (taken by inserting rows that reference the
organisation, such as audit entries) waited for each other and one was killed as a deadlock (500).
The requests really overlap: they go through the app at once (asyncio.gather), each in its own
transaction on its own connection.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import CreatedOrg, Env
from tests.support.data import use_fake_dns

pytestmark = pytest.mark.postgres_only

BURST = 12


async def _burst(env: Env, path: str, headers: dict[str, str]) -> list[httpx.Response]:
    responses = await asyncio.gather(
        *(env.client.post(path, json={"confirm": True}, headers=headers) for _ in range(BURST))
    )
    unexpected = [(r.status_code, r.text) for r in responses if r.status_code not in (200, 409)]
    assert not unexpected, unexpected
    assert any(r.status_code == 200 for r in responses)
    return list(responses)


async def _admin_headers(env: Env, org: CreatedOrg) -> dict[str, str]:
    return (await env.member(org)).headers


async def test_concurrent_api_key_rotations_all_answer_and_one_key_works(env: Env) -> None:
    org = await env.org()
    headers = await _admin_headers(env, org)
    responses = await _burst(env, "/api/organisation/apikey/rotate", headers)
    keys = [r.json()["apiKey"] for r in responses if r.status_code == 200]
    assert len(set(keys)) == len(keys)  # every success handed out a key of its own

    working = []
    for key in [*keys, org.api_key]:
        reply = await env.client.get("/api/organisation", headers={"X-BINTU-APIKEY": key})
        assert reply.status_code in (200, 401), reply.text
        if reply.status_code == 200:
            working.append(key)
    assert len(working) == 1
    # The one that works is the one the organisation reveals now.
    revealed = await env.client.get("/api/organisation/apikey", headers=headers)
    assert revealed.json()["apiKey"] == working[0]


async def test_concurrent_player_key_rotations_all_answer_and_one_key_is_current(env: Env) -> None:
    org = await env.org()
    headers = await _admin_headers(env, org)
    responses = await _burst(env, "/api/organisation/playerkey/rotate", headers)
    keys = [r.json()["playerKey"] for r in responses if r.status_code == 200]
    assert len(set(keys)) == len(keys)
    current = (await env.client.get("/api/organisation/playerkey", headers=headers)).json()["playerKey"]
    assert [key for key in keys if key == current] == [current]


async def test_concurrent_webhook_secret_rotations_all_answer(env: Env) -> None:
    org = await env.org()
    headers = await _admin_headers(env, org)
    use_fake_dns(env)
    saved = await env.client.put(
        "/api/organisation/webhook", json={"webhook": "https://hooks.example.com/in"}, headers=headers
    )
    assert saved.status_code == 200, saved.text
    responses = await _burst(env, "/api/organisation/webhook/secret/rotate", headers)
    secrets = [r.json()["secret"] for r in responses if r.status_code == 200]
    assert len(set(secrets)) == len(secrets)
    config = await env.client.get("/api/organisation/webhook", headers=headers)
    assert config.json()["hasSecret"] is True
