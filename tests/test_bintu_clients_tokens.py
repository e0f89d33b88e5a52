"""Real bintu clients of the token service and the account routes, replayed as they call them
(/work/shared/BINTU-WIRE.md): one test per client, asserting every field that client reads, with the
type it expects.

* DBP: the Express backend of the token best-practices docs;
* DJWT / DREV: the curl flows of the JWT and revocation docs (create, verify, revoke, their errors);
* SDK05: the 0.5 JS SDK's ``validateApiKey`` (``POST /apikey``);
* DCAP: the live-captions guide's journey (login, then ``POST /user/password``).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from streamward.authn.models import PasswordReset
from streamward.playback.keys import private_key_of
from streamward.playback.models import PlaybackSigningKey
from streamward.streams.models import Stream
from tests.conftest import CreatedOrg, Env

SPLAY = "/api/v1/splay"
VERIFY = "/api/v1/splay/verify"
REVOKE = "/api/v1/splay/revoke"
# What the JS SDKs send on every call, GET included.
SDK_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


def documented_refusal(response: httpx.Response, status: int, error_code: int) -> None:
    """The token service's documented error: that status, and top-level success/errorCode/message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert type(body["errorCode"]) is int and body["errorCode"] == error_code, body
    assert isinstance(body["message"], str) and body["message"], body


async def a_stream(env: Env, org: CreatedOrg) -> str:
    """A stream of the organisation, by name (written directly: these tests are about tokens)."""
    name = f"{uuid.uuid4().hex[:5]}-{uuid.uuid4().hex[:5]}"
    async with env.runtime.database.session() as session:
        session.add(Stream(organisation_id=org.id, name=name))
        await session.commit()
    return name


async def expired_token(env: Env, org: CreatedOrg, token: str) -> str:
    """The same claims, validly signed with the organisation's key, expired a minute ago."""
    async with env.runtime.database.session() as session:
        key = (
            await session.execute(
                select(PlaybackSigningKey).where(
                    PlaybackSigningKey.organisation_id == org.id, PlaybackSigningKey.retired_at.is_(None)
                )
            )
        ).scalar_one()
    claims = jwt.decode(token, options={"verify_signature": False}) | {"exp": int(time.time()) - 60}
    return jwt.encode(
        claims, private_key_of(env.runtime.secret_box, key), algorithm="EdDSA", headers={"kid": key.kid}
    )


async def test_dbp_express_backend_issues_a_group_token(env: Env) -> None:
    """DBP: ``fetch(POST /api/v1/splay, {groupid, exp, ip, domain})`` with a lower-case
    ``x-bintu-token``; success is ``resp.ok``; the backend hands ``data.token`` to the player."""
    org = await env.org(packages=["secure_playback"])
    operator = await env.member(org, "nanoUser")
    exp = int(time.time()) + 2 * 3600
    response = await env.client.post(
        SPLAY,
        json={"groupid": "stage-1", "exp": exp, "ip": "198.51.100.23", "domain": "www.example.com"},
        headers={"content-type": "application/json", "x-bintu-token": operator.token or ""},
    )
    assert response.is_success, response.text  # resp.ok
    data = response.json()
    assert data["success"] is True
    token = data["data"]["token"]
    assert isinstance(token, str) and token.count(".") == 2
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["groupid"], claims["exp"], claims["ip"], claims["domain"]) == (
        "stage-1",
        exp,
        "198.51.100.23/32",
        "www.example.com",
    )
    # The player's verifier accepts it where it was meant to be used.
    verified = await env.client.post(
        VERIFY, json={"token": token, "ip": "198.51.100.23", "domain": "www.example.com"}
    )
    assert verified.status_code == 200, verified.text


async def test_djwt_curl_create_verify_and_their_errors(env: Env) -> None:
    """DJWT: create with ``X-BINTU-APIKEY`` and ``{"streams": [...]}`` -> 200
    ``{"success": true, "data": {"token"}}``; verify without credentials -> 200 with ``data.token``
    the same JWT; errors carry ``success: false``, ``errorCode`` and ``message`` at the top."""
    org = await env.org(packages=["secure_playback"])
    stream = await a_stream(env, org)
    headers = {"content-type": "application/json", "X-BINTU-APIKEY": org.api_key}

    created = await env.client.post(SPLAY, json={"streams": [stream]}, headers=headers)
    assert created.status_code == 200, created.text
    body = created.json()
    assert body == {"success": True, "data": {"token": body["data"]["token"]}}
    token = body["data"]["token"]
    assert isinstance(token, str)

    verified = await env.client.post(
        VERIFY, json={"token": token}, headers={"content-type": "application/json"}
    )
    assert verified.status_code == 200, verified.text
    reply: dict[str, Any] = verified.json()
    assert reply["success"] is True and reply["data"]["token"] == token

    # 400 / 1000 "Parameter required": no scope at all.
    documented_refusal(await env.client.post(SPLAY, json={}, headers=headers), 400, 1000)
    # 403 / 1001 "Provided APIKey is not valid".
    documented_refusal(
        await env.client.post(
            SPLAY, json={"streams": [stream]}, headers=headers | {"X-BINTU-APIKEY": "swk_not-a-key"}
        ),
        403,
        1001,
    )
    # 403 / 1002 "jwt expired".
    documented_refusal(
        await env.client.post(VERIFY, json={"token": await expired_token(env, org, token)}), 403, 1002
    )


async def test_drev_curl_revoke_and_its_errors(env: Env) -> None:
    """DREV: ``POST /api/v1/splay/revoke {token}`` with the creator's credentials -> 204, no body;
    400 / 2011 not revocable, 400 / 2012 another organisation's token, 400 / 2004 not a JWT,
    403 / 1001 bad credentials (and, our choice, a role without the permission)."""
    org = await env.org(packages=["secure_playback"])
    other = await env.org(packages=["secure_playback"])
    admin = await env.member(org)
    observer = await env.member(org, "nanoReadOnly")
    bintu = {"content-type": "application/json", "X-BINTU-TOKEN": admin.token or ""}

    issued = await env.client.post(SPLAY, json={"orgawide": True, "revocable": True}, headers=bintu)
    assert issued.status_code == 200, issued.text
    revocable = issued.json()["data"]["token"]

    revoked = await env.client.post(REVOKE, json={"token": revocable}, headers=bintu)
    assert (revoked.status_code, revoked.content) == (204, b"")
    documented_refusal(await env.client.post(VERIFY, json={"token": revocable}), 403, 1002)

    lasting = (await env.client.post(SPLAY, json={"orgawide": True}, headers=bintu)).json()["data"]["token"]
    documented_refusal(await env.client.post(REVOKE, json={"token": lasting}, headers=bintu), 400, 2011)

    theirs = (
        await env.client.post(
            SPLAY, json={"orgawide": True, "revocable": True}, headers={"X-BINTU-APIKEY": other.api_key}
        )
    ).json()["data"]["token"]
    documented_refusal(await env.client.post(REVOKE, json={"token": theirs}, headers=bintu), 400, 2012)
    documented_refusal(await env.client.post(REVOKE, json={"token": "not.a-jwt"}, headers=bintu), 400, 2004)
    documented_refusal(
        await env.client.post(REVOKE, json={"token": lasting}, headers={"X-BINTU-TOKEN": "swt_nope"}),
        403,
        1001,
    )
    documented_refusal(
        await env.client.post(REVOKE, json={"token": lasting}, headers=observer.headers), 403, 1001
    )
    # None of the refusals ended anything.
    assert (await env.client.post(VERIFY, json={"token": lasting})).status_code == 200
    assert (await env.client.post(VERIFY, json={"token": theirs})).status_code == 200


def _iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


async def test_sdk05_validate_api_key(env: Env) -> None:
    """SDK05 ``validateApiKey``: ``POST /apikey {apikey}`` without a credential header; success is
    status 200 and the app reads ``key`` and ``created_at``; on failure it reads ``error.code``,
    ``error.message`` and ``error.userinfo.apikey``."""
    org = await env.org()
    admin = await env.member(org)

    valid = await env.client.post("/api/apikey", json={"apikey": org.api_key}, headers=SDK_HEADERS)
    assert valid.status_code == 200, valid.text
    body = valid.json()
    assert set(body) == {"key", "created_at"}
    assert isinstance(body["key"], str) and body["key"] == org.api_key[:6] + "****"
    assert org.api_key not in valid.text
    assert isinstance(body["created_at"], str)
    # The first key is made with the organisation.
    created = org.organisation.created_at
    assert abs((_iso(body["created_at"]) - created.replace(tzinfo=created.tzinfo or UTC)).total_seconds()) < 1

    before_rotation = datetime.now(UTC)
    rotated = await env.client.post(
        "/api/organisation/apikey/rotate", json={"confirm": True}, headers=admin.headers
    )
    assert rotated.status_code == 200, rotated.text
    new_key = rotated.json()["apiKey"]
    renewed = await env.client.post("/api/apikey", json={"apikey": new_key}, headers=SDK_HEADERS)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["key"] == new_key[:6] + "****"
    assert _iso(renewed.json()["created_at"]) >= before_rotation.replace(microsecond=0)

    for sent in ({"apikey": org.api_key}, {"apikey": "swk_" + "x" * 43}, {"apikey": ""}, {}):
        refused = await env.client.post("/api/apikey", json=sent, headers=SDK_HEADERS)
        assert refused.status_code == 401, (sent, refused.text)
        error = refused.json()["error"]
        assert isinstance(error["code"], str) and error["code"] == "apikey_invalid"
        assert isinstance(error["message"], str) and error["message"]
        echoed = error["userinfo"]["apikey"]
        assert isinstance(echoed, str) and echoed == str(sent.get("apikey", ""))[:6] + "****"


@pytest.mark.parametrize("settings_overrides", [{"login_rate_per_ip": 3}])
async def test_sdk05_validate_api_key_is_rate_limited_per_client_address(env: Env) -> None:
    org = await env.org()
    checks = [org.api_key, "swk_wrong", org.api_key]
    for key in checks:
        response = await env.client.post("/api/apikey", json={"apikey": key}, headers=SDK_HEADERS)
        assert response.status_code in (200, 401), response.text
    throttled = await env.client.post("/api/apikey", json={"apikey": org.api_key}, headers=SDK_HEADERS)
    assert throttled.status_code == 429, throttled.text
    assert int(throttled.headers["retry-after"]) >= 1
    error = throttled.json()["error"]
    assert error["code"] == "rate_limited" and error["userinfo"]["apikey"] == org.api_key[:6] + "****"
    # Another address has its own budget, and key checks do not spend the login budget.
    async with env.client_from("198.51.100.9") as elsewhere:
        other = await elsewhere.post("/api/apikey", json={"apikey": org.api_key}, headers=SDK_HEADERS)
    assert other.status_code == 200, other.text
    login = await env.client.post("/api/user/validate", json={"email": "nobody@example.com", "password": "x"})
    assert login.status_code == 401, login.text


async def test_dcap_journey_login_then_password_reset(env: Env) -> None:
    """DCAP: ``POST /user/validate {email, password}`` -> ``token`` and, for a nanoAdmin, ``apiKey``;
    ``GET /organisation`` with that key; ``POST /user/password {email}`` always 200, the same answer
    whether or not the email has an account."""
    org = await env.org()
    admin = await env.member(org, email="captions@example.com", token=False)
    json_headers = {"content-type": "application/json"}

    login = await env.client.post(
        "/api/user/validate", json={"email": admin.email, "password": admin.password}, headers=json_headers
    )
    assert login.status_code == 200, login.text
    assert isinstance(login.json()["token"], str) and login.json()["token"]
    api_key = login.json()["apiKey"]
    assert isinstance(api_key, str) and api_key == org.api_key
    organisation = await env.client.get(
        "/api/organisation", headers=SDK_HEADERS | {"X-BINTU-APIKEY": api_key}
    )
    assert organisation.status_code == 200 and isinstance(organisation.json(), dict)

    known = await env.client.post(
        "/api/user/password", json={"email": "Captions@Example.com"}, headers=json_headers
    )
    unknown = await env.client.post(
        "/api/user/password", json={"email": "nobody@example.com"}, headers=json_headers
    )
    assert (known.status_code, unknown.status_code) == (200, 200), (known.text, unknown.text)
    assert known.json() == unknown.json() and isinstance(known.json()["message"], str)
    # The same reset request as the older route: one single-use link stored for the account.
    async with env.runtime.database.session() as session:
        links = (await session.execute(select(PasswordReset))).scalars().all()
    assert [link.account_id for link in links] == [admin.account.id]

    # The older path stays, with its own status and the same body.
    alias = await env.client.post("/api/user/password/reset", json={"email": "nobody@example.com"})
    assert (alias.status_code, alias.json()) == (202, known.json())
