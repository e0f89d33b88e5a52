"""Playback-token verify, made cheap without weakening "revoked means refused on the next verify".

Each process keeps the public half of the signing keys it has met (it never changes for a key id);
whether the key was revoked and whether the token was revoked are read on every verify, in one
round trip. Two apps over one database stand for two processes: a revocation, a rotation with
``revokeOld`` or a key that disappears, committed through A, is refused by B's very next verify,
although B has just verified the same token (its key cache is warm).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, event

from streamward.app import create_app
from streamward.playback.models import PlaybackSigningKey
from streamward.runtime import Runtime
from tests.conftest import CreatedOrg, Env
from tests.support.data import create_stream, playback_token

VERIFY = "/api/v1/splay/verify"


@pytest.fixture
async def b(env: Env) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """App B: a second Streamward (own runtime, caches, pool) over A's database."""
    runtime = Runtime.from_settings(env.settings)
    transport = httpx.ASGITransport(app=create_app(env.settings, runtime=runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, runtime
    finally:
        await runtime.aclose()


async def _verify(client: httpx.AsyncClient, token: str, **where: Any) -> tuple[int, str | None]:
    response = await client.post(VERIFY, json={"token": token} | where)
    assert response.status_code != 500, response.text
    body = response.json()
    return response.status_code, None if body["success"] else body["error"]["reason"]


async def _secure_org(env: Env) -> tuple[CreatedOrg, str]:
    org = await env.org(packages=["secure_playback"])
    stream = await create_stream(env, org)
    return org, stream["name"]


async def test_a_revocation_through_a_is_refused_by_bs_very_next_verify(
    env: Env, b: tuple[httpx.AsyncClient, Runtime]
) -> None:
    other, _ = b
    org, name = await _secure_org(env)
    token = await playback_token(env, org, streams=[name], revocable=True)
    for _ in range(3):  # B has met the key and the token
        assert await _verify(other, token, stream=name) == (200, None)
    revoked = await env.client.post("/api/v1/splay/revoke", json={"token": token}, headers=org.api_headers)
    assert revoked.status_code == 204
    assert await _verify(other, token, stream=name) == (403, "token_revoked")
    assert await _verify(other, token) == (403, "token_revoked")
    # Another revocable token of the same key is untouched.
    kept = await playback_token(env, org, streams=[name], revocable=True)
    assert await _verify(other, kept, stream=name) == (200, None)


async def test_a_rotation_with_revoke_old_through_a_is_refused_by_bs_very_next_verify(
    env: Env, b: tuple[httpx.AsyncClient, Runtime]
) -> None:
    other, _ = b
    org, name = await _secure_org(env)
    plain = await playback_token(env, org, orgawide=True)
    revocable = await playback_token(env, org, orgawide=True, revocable=True)
    rotate = "/api/organisation/playback-keys/rotate"

    # A rotation that only retires the key: B keeps verifying old tokens, and the new key's at once.
    for token in (plain, revocable):
        assert await _verify(other, token, stream=name) == (200, None)
    assert (await env.client.post(rotate, json={}, headers=org.api_headers)).status_code == 200
    newer = await playback_token(env, org, orgawide=True)
    for token in (plain, revocable, newer):
        assert await _verify(other, token, stream=name) == (200, None)

    rotated = await env.client.post(rotate, json={"revokeOld": True}, headers=org.api_headers)
    assert rotated.status_code == 200 and rotated.json()["revoked"]
    for token in (plain, revocable, newer):
        assert await _verify(other, token, stream=name) == (403, "key_revoked")
    assert await _verify(other, await playback_token(env, org, orgawide=True), stream=name) == (200, None)


async def test_a_key_that_is_gone_is_refused_although_b_has_met_it(
    env: Env, b: tuple[httpx.AsyncClient, Runtime]
) -> None:
    other, _ = b
    org, _ = await _secure_org(env)
    token = await playback_token(env, org, orgawide=True)
    assert await _verify(other, token) == (200, None)
    async with env.runtime.database.session() as session:  # what deleting the organisation does
        await session.execute(delete(PlaybackSigningKey).where(PlaybackSigningKey.organisation_id == org.id))
        await session.commit()
    assert await _verify(other, token) == (400, "unknown_key")


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement sent to the database: through SQLAlchemy, or straight through asyncpg."""
    sent: list[str] = []
    original_fetchrow, original_fetch = asyncpg.Connection.fetchrow, asyncpg.Connection.fetch

    async def fetchrow(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return await original_fetchrow(self, query, *args, **kwargs)

    async def fetch(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return await original_fetch(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "fetchrow", fetchrow)
    monkeypatch.setattr(asyncpg.Connection, "fetch", fetch)
    return sent


async def test_a_verify_is_one_round_trip(
    env: Env, b: tuple[httpx.AsyncClient, Runtime], round_trips: list[str]
) -> None:
    other, runtime = b
    org, name = await _secure_org(env)
    tokens = [
        await playback_token(env, org, streams=[name], revocable=True),
        await playback_token(env, org, orgawide=True),
    ]

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        round_trips.append(statement)

    event.listen(runtime.database.engine.sync_engine, "before_cursor_execute", note)
    try:
        assert await _verify(other, tokens[0], stream=name) == (200, None)  # B meets the key
        for token in tokens:
            for where in ({"stream": name}, {}):
                round_trips.clear()
                assert await _verify(other, token, **where) == (200, None)
                assert len(round_trips) == 1, round_trips
        # A forged token costs no query at all once the key is known.
        round_trips.clear()
        forged = _sign(jwt.decode(tokens[1], options={"verify_signature": False}), tokens[1])
        assert await _verify(other, forged) == (400, "invalid_token")
        assert round_trips == []
    finally:
        event.remove(runtime.database.engine.sync_engine, "before_cursor_execute", note)


def _sign(claims: dict[str, Any], like: str) -> str:
    """``claims`` signed by an attacker's key under the key id of the token ``like``."""
    kid = jwt.get_unverified_header(like)["kid"]
    return jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid})


# --- the token reader against hand-made tokens ---------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


KEY = Ed25519PrivateKey.generate()
ISSUER = "https://streamward.example"
