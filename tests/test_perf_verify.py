"""Playback-token verify, made cheap without weakening "revoked means refused on the next verify".

Each process keeps the public half of the signing keys it has met (it never changes for a key id);
whether the key was revoked and whether the token was revoked are read on every verify, in one
round trip. Two apps over one database stand for two processes: a revocation, a rotation with
``revokeOld`` or a key that disappears, committed through A, is refused by B's very next verify,
although B has just verified the same token (its key cache is warm).
"""

from __future__ import annotations

import base64
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, event

from streamward.app import create_app
from streamward.playback import keys, service
from streamward.playback.keys import VerifyingKey
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


# --- signatures kept by the token's text ---------------------------------------------------------


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The signing input of every Ed25519 check verifies make, with an empty cache of checked
    signatures (so that no other test's tokens are in it)."""
    checked: list[bytes] = []
    original = service.PresentedToken.signed_payload

    def counting(self: service.PresentedToken, key: VerifyingKey) -> bytes:
        checked.append(self.signing_input)
        return original(self, key)

    monkeypatch.setattr(service.PresentedToken, "signed_payload", counting)
    monkeypatch.setattr(service, "_verified", OrderedDict())
    return checked


async def test_a_token_met_before_skips_its_signature_check_and_nothing_else(
    env: Env,
    b: tuple[httpx.AsyncClient, Runtime],
    signature_checks: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other, _ = b
    org, name = await _secure_org(env)
    elsewhere = (await create_stream(env, org))["name"]
    now = int(time.time())
    token = await playback_token(env, org, streams=[name], revocable=True, domain="example.com", exp=now + 60)
    for _ in range(3):
        assert await _verify(other, token, stream=name, domain="example.com") == (200, None)
    assert len(signature_checks) == 1
    # What the token is presented for is checked every time, as are its times and its revocation.
    assert await _verify(other, token, stream=elsewhere, domain="example.com") == (403, "scope_mismatch")
    assert await _verify(other, token, stream=name, domain="example.org") == (403, "domain_mismatch")
    monkeypatch.setattr(service, "clock", lambda: now + 60 + service.CLOCK_LEEWAY_SECONDS)
    assert await _verify(other, token, stream=name, domain="example.com") == (403, "token_expired")
    monkeypatch.setattr(service, "clock", time.time)
    revoked = await env.client.post("/api/v1/splay/revoke", json={"token": token}, headers=org.api_headers)
    assert revoked.status_code == 204
    assert await _verify(other, token, stream=name, domain="example.com") == (403, "token_revoked")
    assert len(signature_checks) == 1


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _with_signature(token: str, signature: bytes) -> str:
    return token.rsplit(".", 1)[0] + "." + _b64(signature)


async def test_a_token_that_differs_from_a_kept_one_is_checked_in_full(
    env: Env, signature_checks: list[bytes]
) -> None:
    org, _ = await _secure_org(env)
    token = await playback_token(env, org, orgawide=True)
    assert await _verify(env.client, token) == (200, None)
    claims = jwt.decode(token, options={"verify_signature": False})
    header, _, signature = token.split(".")
    raw_signature = base64.urlsafe_b64decode(signature + "==")
    variants = [
        _sign(claims, token),  # the same claims under the same kid, signed by another key
        _sign(claims | {"exp": claims["exp"] - 1}, token),
        _with_signature(token, raw_signature[:-1] + bytes([raw_signature[-1] ^ 1])),
        f"{header}.{_b64(json.dumps(claims | {'orgawide': True, 'x': 1}).encode())}.{signature}",
    ]
    for variant in variants:
        assert await _verify(env.client, variant) == (400, "invalid_token")
    assert len(signature_checks) == 1 + len(variants)
    assert list(service._verified) == [token]  # only what verified is kept
    assert await _verify(env.client, token) == (200, None)
    assert len(signature_checks) == 1 + len(variants)


async def test_the_kept_signatures_are_bounded_least_recently_used_first(
    env: Env, signature_checks: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "MAX_VERIFIED_TOKENS", 2)
    org, _ = await _secure_org(env)
    tokens = [await playback_token(env, org, orgawide=True, tag=str(n)) for n in range(3)]
    for token in (tokens[0], tokens[1], tokens[0]):  # the third verify is a kept one's
        assert await _verify(env.client, token) == (200, None)
    assert list(service._verified) == [tokens[1], tokens[0]]
    assert await _verify(env.client, tokens[2]) == (200, None)
    assert list(service._verified) == [tokens[0], tokens[2]]
    assert await _verify(env.client, tokens[1]) == (200, None)  # checked again, kept again
    assert len(signature_checks) == 4
    assert list(service._verified) == [tokens[2], tokens[1]]


async def test_a_token_longer_than_any_ordinary_one_is_not_kept(
    env: Env, signature_checks: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _ = await _secure_org(env)
    short = await playback_token(env, org, orgawide=True)
    long = await playback_token(env, org, orgawide=True, user="u" * 256)
    monkeypatch.setattr(service, "MAX_KEPT_TOKEN_LENGTH", len(long) - 1)
    for _ in range(2):
        assert await _verify(env.client, long) == (200, None)
        assert await _verify(env.client, short) == (200, None)
    assert len(signature_checks) == 3 and list(service._verified) == [short]


async def test_a_kept_signature_counts_only_under_the_key_that_made_it(
    env: Env, signature_checks: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kid names one public key for ever; were its row ever changed (a restore, a hand edit), a
    token kept under the old key is checked again under the new one, as before it was kept."""
    org, _ = await _secure_org(env)
    token = await playback_token(env, org, orgawide=True)
    assert await _verify(env.client, token) == (200, None)
    kid = jwt.get_unverified_header(token)["kid"]
    other = VerifyingKey(kid, org.id, Ed25519PrivateKey.generate().public_key())
    monkeypatch.setitem(keys._verifying_keys, kid, other)
    assert await _verify(env.client, token) == (400, "invalid_token")
    assert len(signature_checks) == 2


async def test_each_verify_reads_claims_of_its_own(env: Env, signature_checks: list[bytes]) -> None:
    org, name = await _secure_org(env)
    token = await playback_token(env, org, streams=[name])
    where = service.Presentation(stream=name)
    issuer = env.settings.base_url
    async with env.runtime.database.session(write=False) as session:
        first = await service.verify(session, token, where, issuer=issuer)
        first["streams"].append("not-granted")
        first["orgawide"] = True
        second = await service.verify(session, token, where, issuer=issuer)
    assert second["streams"] == [name] and "orgawide" not in second
    assert len(signature_checks) == 1
