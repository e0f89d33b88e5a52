"""A revoked playback token stays revoked for as long as it could verify.

Verification accepts a token until ``exp`` plus a clock leeway; revocations used to be forgotten at
``exp``, so a revoked token verified again inside the leeway once any later revocation in the
organisation cleaned up. The service's clock is replaced to step through a token's life.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from streamward.playback import service
from streamward.playback.keys import private_key_of
from streamward.playback.models import PlaybackRevocation, PlaybackSigningKey
from tests.conftest import CreatedOrg, Env
from tests.support.data import playback_token

VERIFY = "/api/v1/splay/verify"
REVOKE = "/api/v1/splay/revoke"
LEEWAY = service.CLOCK_LEEWAY_SECONDS


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(float(int(time.time())))
    monkeypatch.setattr(service, "clock", fake, raising=False)
    return fake


async def _verify(env: Env, token: str) -> tuple[int, str | None]:
    response = await env.client.post(VERIFY, json={"token": token})
    assert response.status_code != 500, response.text
    body: dict[str, Any] = response.json()
    return response.status_code, None if body["success"] else body["error"]["reason"]


async def _revoke(env: Env, org: CreatedOrg, token: str) -> None:
    response = await env.client.post(REVOKE, json={"token": token}, headers=org.api_headers)
    assert response.status_code == 204, response.text


async def _revocations(env: Env, org: CreatedOrg) -> int:
    async with env.runtime.database.session(write=False) as session:
        statement = select(func.count()).where(PlaybackRevocation.organisation_id == org.id)
        return int(await session.scalar(statement) or 0)


async def _sign_with_org_key(env: Env, org: CreatedOrg, **claims: Any) -> str:
    async with env.runtime.database.session(write=False) as session:
        key = (
            await session.execute(
                select(PlaybackSigningKey).where(
                    PlaybackSigningKey.organisation_id == org.id, PlaybackSigningKey.retired_at.is_(None)
                )
            )
        ).scalar_one()
    base = {
        "iss": env.settings.base_url,
        "aud": "playback",
        "typ": "playback",
        "jti": uuid.uuid4().hex,
        "org": str(org.id),
        "orgawide": True,
        "revocable": True,
        "forceDisconnect": False,
    }
    signing_key = private_key_of(env.runtime.secret_box, key)
    return jwt.encode(base | claims, signing_key, algorithm="EdDSA", headers={"kid": key.kid})


async def test_a_token_revoked_inside_the_leeway_stays_revoked_after_a_cleanup(
    env: Env, clock: Clock
) -> None:
    org = await env.org(packages=["secure_playback"])
    await playback_token(env, org)  # creates the organisation's signing key
    now = int(clock())
    # Expired a moment ago, but still inside the verification leeway: it verifies.
    lingering = await _sign_with_org_key(env, org, iat=now - 60, nbf=now - 60, exp=now - 2)
    assert await _verify(env, lingering) == (200, None)
    await _revoke(env, org, lingering)
    assert await _verify(env, lingering) == (403, "token_revoked")

    # Any later revocation in the organisation cleans up old revocations: not this one.
    await _revoke(env, org, await playback_token(env, org, orgawide=True, revocable=True))
    assert await _verify(env, lingering) == (403, "token_revoked")


async def test_revocation_outlives_every_moment_the_token_verifies(env: Env, clock: Clock) -> None:
    org = await env.org(packages=["secure_playback"])
    start = int(clock())
    token = await playback_token(env, org, orgawide=True, revocable=True, exp=start + 60)
    exp = start + 60
    await _revoke(env, org, token)

    async def cleanup_then_verify(at: float) -> tuple[int, str | None]:
        clock.now = at
        await _revoke(env, org, await playback_token(env, org, orgawide=True, revocable=True))
        return await _verify(env, token)

    # Up to the last moment the leeway lets the token verify, it is refused as revoked.
    assert await cleanup_then_verify(exp) == (403, "token_revoked")
    assert await cleanup_then_verify(exp + LEEWAY - 1) == (403, "token_revoked")
    assert await cleanup_then_verify(exp + LEEWAY - 0.001) == (403, "token_revoked")
    # From then on it is expired whatever the revocation list says.
    assert await cleanup_then_verify(exp + LEEWAY) == (403, "token_expired")
    # And the revocation is eventually forgotten: housekeeping still happens.
    kept = await _revocations(env, org)
    clock.now = exp + service.REVOCATION_KEPT_AFTER_EXP_SECONDS + 1
    await _revoke(env, org, await playback_token(env, org, orgawide=True, revocable=True))
    assert await _revocations(env, org) == kept  # one forgotten, one added
    assert await _verify(env, token) == (403, "token_expired")


async def test_times_follow_the_service_clock(env: Env, clock: Clock) -> None:
    org = await env.org(packages=["secure_playback"])
    start = int(clock())
    token = await playback_token(env, org, orgawide=True, nbf=start + 100, exp=start + 200)
    clock.now = start + 100 - LEEWAY - 1
    assert await _verify(env, token) == (403, "token_not_yet_valid")
    clock.now = start + 100 - LEEWAY
    assert await _verify(env, token) == (200, None)
    clock.now = start + 200 + LEEWAY - 1
    assert await _verify(env, token) == (200, None)
    clock.now = start + 200 + LEEWAY
    assert await _verify(env, token) == (403, "token_expired")


async def test_non_integer_times_are_refused_as_invalid(env: Env, clock: Clock) -> None:
    org = await env.org(packages=["secure_playback"])
    await playback_token(env, org)
    now = int(clock())
    for claims in (
        {"iat": now, "nbf": now, "exp": float(now + 60)},
        {"iat": now, "nbf": "0", "exp": now + 60},
        {"iat": True, "nbf": now, "exp": now + 60},
    ):
        token = await _sign_with_org_key(env, org, **claims)
        assert await _verify(env, token) == (400, "invalid_token"), claims
