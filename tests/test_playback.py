"""The playback-token service: issue, verify, revoke, key rotation, JWKS, and the attacks a
verifier must refuse (each with its documented code, never a 500)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import delete, select, update

from streamward.playback.keys import private_key_of
from streamward.playback.models import PlaybackSigningKey
from streamward.users.models import Membership, new_token_key
from tests.conftest import CreatedOrg, Env
from tests.support.data import audit_entries, create_stream, playback_token

SPLAY = "/api/v1/splay"
VERIFY = "/api/v1/splay/verify"
REVOKE = "/api/v1/splay/revoke"


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def _verify(env: Env, token: str, **where: Any) -> tuple[int, dict[str, Any]]:
    response = await env.client.post(VERIFY, json={"token": token} | where)
    assert response.status_code != 500, response.text
    return response.status_code, response.json()


def _refused(reply: tuple[int, dict[str, Any]]) -> tuple[int, int, str]:
    """(status, number, reason) of a refusal, after checking both shapes carry the same number: the
    documented top-level ``errorCode``/``message`` and the ``error`` object beside them."""
    status, body = reply
    assert body["success"] is False, body
    assert body["errorCode"] == body["error"]["code"] and isinstance(body["errorCode"], int), body
    assert body["message"] == body["error"]["message"] and body["message"], body
    return status, body["error"]["code"], body["error"]["reason"]


async def _active_key(env: Env, org: CreatedOrg) -> tuple[str, Ed25519PrivateKey]:
    async with env.runtime.database.session() as session:
        key = (
            await session.execute(
                select(PlaybackSigningKey).where(
                    PlaybackSigningKey.organisation_id == org.id, PlaybackSigningKey.retired_at.is_(None)
                )
            )
        ).scalar_one()
    return key.kid, private_key_of(env.runtime.secret_box, key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


async def test_issue_then_verify(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    stream = await create_stream(env, org)
    operator = await env.member(org, "nanoUser")
    response = await env.client.post(
        SPLAY, json={"streams": [stream["name"]], "user": "viewer-7", "tag": "vip"}, headers=operator.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and set(body["data"]) == {"token"}
    token = body["data"]["token"]

    header, claims = jwt.get_unverified_header(token), _claims(token)
    assert header["alg"] == "EdDSA" and header["kid"]
    assert claims["iss"] == env.settings.base_url
    assert (claims["aud"], claims["typ"], claims["org"]) == ("playback", "playback", str(org.id))
    assert claims["streams"] == [stream["name"]] and "groupid" not in claims and "orgawide" not in claims
    assert claims["exp"] - claims["iat"] == 24 * 3600 and claims["nbf"] == claims["iat"]
    assert (claims["user"], claims["tag"], claims["revocable"], claims["forceDisconnect"]) == (
        "viewer-7",
        "vip",
        False,
        False,
    )
    assert len(claims["jti"]) >= 32

    status, reply = await _verify(env, token, stream=stream["name"])
    assert status == 200
    assert reply == {"success": True, "data": {"token": token, "valid": True, "claims": claims}}

    # Anyone can verify it with the published key alone, with a standard JWT library.
    jwks = (await env.client.get("/.well-known/jwks.json")).json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public, algorithms=["EdDSA"], audience="playback")["org"] == str(org.id)


async def test_jwks_is_public_cacheable_and_holds_no_private_material(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    await playback_token(env, org)
    response = await env.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    (key,) = response.json()["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    only_other = await env.client.get("/.well-known/jwks.json", params={"organisation": str(uuid.uuid4())})
    assert only_other.json() == {"keys": []}


async def test_scopes_group_and_organisation_wide(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    in_group = await create_stream(env, org, groupId="stage-1")
    other_group = await create_stream(env, org, groupId="stage-2")
    by_group = await playback_token(env, org, groupid="stage-1")
    assert (await _verify(env, by_group, stream=in_group["name"]))[0] == 200
    assert _refused(await _verify(env, by_group, stream=other_group["name"])) == (403, 1001, "scope_mismatch")

    by_name = await playback_token(env, org, streams=[in_group["name"]])
    assert _refused(await _verify(env, by_name, stream=other_group["name"])) == (403, 1001, "scope_mismatch")

    everything = await playback_token(env, org, orgawide=True)
    for stream in (in_group, other_group):
        assert (await _verify(env, everything, stream=stream["name"]))[0] == 200
    assert _refused(await _verify(env, everything, stream="no-such-stream")) == (403, 1001, "scope_mismatch")


async def test_domain_and_client_address_restrictions(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    token = await playback_token(env, org, orgawide=True, domain="*.Example.com", ip="203.0.113.0/24")
    assert _claims(token)["domain"] == "*.example.com"
    ok = await _verify(env, token, domain="player.example.com", ip="203.0.113.7")
    assert ok[0] == 200
    assert _refused(await _verify(env, token, domain="example.org", ip="203.0.113.7")) == (
        403,
        1001,
        "domain_mismatch",
    )
    assert _refused(await _verify(env, token, domain="player.example.com", ip="198.51.100.1")) == (
        403,
        1001,
        "ip_mismatch",
    )
    # A verifier that does not say where the token is used cannot pass a restricted token.
    assert _refused(await _verify(env, token, ip="203.0.113.7"))[:2] == (400, 1000)
    assert _refused(await _verify(env, token, domain="player.example.com"))[:2] == (400, 1000)


ISSUE_REFUSALS: list[tuple[dict[str, Any], int]] = [
    ({}, 1000),  # no scope
    ({"orgawide": True, "groupid": "g"}, 1000),  # two scopes
    ({"orgawide": False}, 1000),
    ({"orgawide": True, "revocable": True, "exp": "in a day"}, 1000),
    ({"orgawide": True, "ip": "not-an-address"}, 1000),
    ({"orgawide": True, "tag": "x" * 65}, 1000),
    ({"orgawide": True, "domain": "exa mple.com"}, 1000),
    ({"streams": ["no-such-stream"]}, 2012),
]


async def test_issue_refuses_bad_requests(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    for body, code in ISSUE_REFUSALS:
        response = await env.client.post(SPLAY, json=body, headers=org.api_headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["success"] is False
        assert response.json()["error"]["code"] == response.json()["errorCode"] == code, (body, response.text)


async def test_lifetimes(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    now = int(time.time())

    async def issue(**body: Any) -> tuple[int, Any]:
        response = await env.client.post(SPLAY, json={"orgawide": True} | body, headers=org.api_headers)
        return response.status_code, response.json()

    assert (await issue(revocable=True, exp=now + 24 * 3600 - 60))[0] == 200
    assert (await issue(revocable=True, exp=now + 25 * 3600))[1]["error"]["code"] == 1000
    assert (await issue(exp=now + 300 * 86400))[0] == 200
    assert (await issue(exp=now + 366 * 86400))[1]["error"]["code"] == 1000
    assert (await issue(exp=now - 10))[1]["error"]["code"] == 1000
    assert (await issue(nbf=now + 7200, exp=now + 3600))[1]["error"]["code"] == 1000
    status, body = await issue(nbf=now + 3600, exp=now + 7200)
    assert status == 200
    assert _refused(await _verify(env, body["data"]["token"])) == (403, 1002, "token_not_yet_valid")


async def test_issuing_needs_the_secure_playback_package(env: Env) -> None:
    org = await env.org(packages=["vod"])
    response = await env.client.post(SPLAY, json={"orgawide": True}, headers=org.api_headers)
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["reason"]) == (1001, "upgrade_needed")
    assert error["details"]["package"] == "secure_playback"


async def test_refusals_keep_the_token_service_envelope(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    observer = await env.member(org, "nanoReadOnly")
    cases = [
        # Bad or missing credentials are 403 / 1001 as documented (the rest of the API says 401).
        (await env.client.post(SPLAY, json={"orgawide": True}), 403, 1001, "unauthenticated"),
        (
            await env.client.post(SPLAY, json={"orgawide": True}, headers={"X-BINTU-TOKEN": "swt_nope"}),
            403,
            1001,
            "unauthenticated",
        ),
        (
            await env.client.post(SPLAY, json={"orgawide": True}, headers=observer.headers),
            403,
            1001,
            "forbidden",
        ),
        (
            await env.client.post(
                SPLAY, content=b"{not json", headers=org.api_headers | {"content-type": "application/json"}
            ),
            400,
            1000,
            "parameter_missing",
        ),
        (await env.client.post(VERIFY, json={}), 400, 1000, "parameter_missing"),
        (await env.client.post(VERIFY, json={"token": "x" * 9000}), 400, 1000, "parameter_missing"),
        (
            await env.client.post(REVOKE, json={"token": "abc"}, headers=org.api_headers),
            400,
            2004,
            "malformed_token",
        ),
    ]
    for response, status, code, reason in cases:
        assert response.status_code == status, response.text
        assert _refused((response.status_code, response.json())) == (status, code, reason)


def _flip(token: str, part: int) -> str:
    """Change one character in the middle of a part (not the last: its low bits may be padding)."""
    parts = token.split(".")
    middle = len(parts[part]) // 2
    replacement = "A" if parts[part][middle] != "A" else "B"
    parts[part] = parts[part][:middle] + replacement + parts[part][middle + 1 :]
    return ".".join(parts)


Forger = Callable[[dict[str, Any], str, Ed25519PrivateKey, str], str]


def _sign(claims: dict[str, Any], key: Ed25519PrivateKey, kid: str) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def _hs256_with_public_key(claims: dict[str, Any], kid: str, key: Ed25519PrivateKey) -> str:
    # The classic confusion attack: the public key, as a verifier might hold it, used as an HMAC secret.
    secret = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


ATTACKS: dict[str, tuple[Callable[[str, dict[str, Any], str, Ed25519PrivateKey], str], int, str]] = {
    # name: (forge(real_token, claims, kid, key), documented code, reason)
    "alg none": (
        lambda t, c, kid, k: _unsigned({"alg": "none", "kid": kid}, c) + ".",
        2004,
        "algorithm_not_allowed",
    ),
    "alg none, no kid": (
        lambda t, c, kid, k: _unsigned({"alg": "none"}, c) + ".",
        2004,
        "algorithm_not_allowed",
    ),
    "HS256 signed with the public key": (
        lambda t, c, kid, k: _hs256_with_public_key(c, kid, k),
        2004,
        "algorithm_not_allowed",
    ),
    "flipped bit in the signature": (lambda t, c, kid, k: _flip(t, 2), 2004, "invalid_token"),
    "flipped bit in the claims": (lambda t, c, kid, k: _flip(t, 1), 2004, "invalid_token"),
    "unknown kid": (
        lambda t, c, kid, k: _sign(c, Ed25519PrivateKey.generate(), "no-such-kid"),
        2004,
        "unknown_key",
    ),
    "our kid, an attacker's key": (
        lambda t, c, kid, k: _sign(c, Ed25519PrivateKey.generate(), kid),
        2004,
        "invalid_token",
    ),
    "kid not a string": (
        lambda t, c, kid, k: _unsigned({"alg": "EdDSA", "kid": 7}, c) + "." + t.split(".")[2],
        2004,
        "malformed_token",
    ),
    "expired": (
        lambda t, c, kid, k: _sign(c | {"exp": int(time.time()) - 60}, k, kid),
        1002,
        "token_expired",
    ),
    "not yet valid": (
        lambda t, c, kid, k: _sign(c | {"nbf": int(time.time()) + 3600}, k, kid),
        1002,
        "token_not_yet_valid",
    ),
    "wrong audience": (lambda t, c, kid, k: _sign(c | {"aud": "bintu"}, k, kid), 2004, "wrong_audience"),
    "wrong issuer": (
        lambda t, c, kid, k: _sign(c | {"iss": "https://evil.example"}, k, kid),
        2004,
        "invalid_token",
    ),
    "not a playback token type": (
        lambda t, c, kid, k: _sign(c | {"typ": "id"}, k, kid),
        2004,
        "invalid_token",
    ),
    "another organisation in the claims": (
        lambda t, c, kid, k: _sign(c | {"org": str(uuid.uuid4())}, k, kid),
        2004,
        "invalid_token",
    ),
    "no expiry": (
        lambda t, c, kid, k: _sign({n: v for n, v in c.items() if n != "exp"}, k, kid),
        2004,
        "invalid_token",
    ),
    "header not an object": (lambda t, c, kid, k: _b64(b"[1, 2]") + ".e30.c2ln", 2004, "malformed_token"),
    "header not JSON": (lambda t, c, kid, k: _b64(b"{not json") + ".e30.c2ln", 2004, "malformed_token"),
    "claims not JSON, validly signed": (
        lambda t, c, kid, k: jwt.api_jws.encode(b"not json", k, algorithm="EdDSA", headers={"kid": kid}),
        2004,
        "invalid_token",
    ),
    "claims a JSON list, validly signed": (
        lambda t, c, kid, k: jwt.api_jws.encode(b"[1]", k, algorithm="EdDSA", headers={"kid": kid}),
        2004,
        "invalid_token",
    ),
    # Read by Streamward itself, not PyJWT (#12): what the compact form and the header may not be.
    "a critical extension, validly signed": (
        lambda t, c, kid, k: jwt.encode(c, k, algorithm="EdDSA", headers={"kid": kid, "crit": ["exp"]}),
        2004,
        "invalid_token",
    ),
    "jti not a string, validly signed": (
        lambda t, c, kid, k: _sign(c | {"jti": 7}, k, kid),
        2004,
        "invalid_token",
    ),
    "audience a list without playback": (
        lambda t, c, kid, k: _sign(c | {"aud": ["api", "web"]}, k, kid),
        2004,
        "wrong_audience",
    ),
    # The same signature bytes: the last character's low bits are unused (A, Q, g, w end a canonical one).
    "the signature's last character spelt otherwise": (
        lambda t, c, kid, k: t[:-1] + chr(ord(t[-1]) + 1),
        2004,
        "malformed_token",
    ),
    "a fourth segment": (lambda t, c, kid, k: t + ".e30", 2004, "malformed_token"),
    "padding in a segment": (lambda t, c, kid, k: t.replace(".", "=.", 1), 2004, "malformed_token"),
    "a character outside base64url": (lambda t, c, kid, k: "+" + t, 2004, "malformed_token"),
    "a bintu token": (lambda t, c, kid, k: "swt_" + "x" * 43, 2004, "malformed_token"),
    "garbage": (lambda t, c, kid, k: "a.b.c", 2004, "malformed_token"),
    "empty parts": (lambda t, c, kid, k: "..", 2004, "malformed_token"),
}


async def test_forged_and_invalid_tokens_are_refused(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    real = await playback_token(env, org, orgawide=True)
    kid, key = await _active_key(env, org)
    answers = {}
    for attack, (forge, _, _) in ATTACKS.items():
        status, body = await _verify(env, forge(real, _claims(real), kid, key))
        assert 400 <= status < 500 and body["success"] is False, (attack, body)
        answers[attack] = (body["error"]["code"], body["error"]["reason"])
    assert answers == {attack: (code, reason) for attack, (_, code, reason) in ATTACKS.items()}
    assert (await _verify(env, real))[0] == 200  # the genuine token, for contrast


async def test_an_audience_list_naming_playback_is_accepted_as_jwt_allows(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    real = await playback_token(env, org, orgawide=True)
    kid, key = await _active_key(env, org)
    listed = _sign(_claims(real) | {"aud": ["web", "playback"]}, key, kid)
    assert (await _verify(env, listed))[0] == 200


async def test_a_bintu_token_of_a_real_member_is_not_a_playback_token(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    admin = await env.member(org)
    assert _refused(await _verify(env, admin.token or "")) == (400, 2004, "malformed_token")


async def test_token_of_one_organisation_for_another_organisations_stream(env: Env) -> None:
    mine = await env.org(packages=["secure_playback"])
    theirs = await env.org(packages=["secure_playback"])
    their_stream = await create_stream(env, theirs)
    token = await playback_token(env, mine, orgawide=True)
    assert _refused(await _verify(env, token, stream=their_stream["name"])) == (
        400,
        2012,
        "other_organisation",
    )
    # Nor can their streams be put into our token.
    response = await env.client.post(
        SPLAY, json={"streams": [their_stream["name"]]}, headers=mine.api_headers
    )
    assert (response.status_code, response.json()["errorCode"]) == (400, 2012)


async def test_token_survives_its_issuers_token_reset_and_deletion(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    stream = await create_stream(env, org)
    issuer = await env.member(org, "nanoUser")
    response = await env.client.post(SPLAY, json={"streams": [stream["name"]]}, headers=issuer.headers)
    token = response.json()["data"]["token"]

    async with env.runtime.database.session() as session:  # "Reset user token"
        await session.execute(
            update(Membership).where(Membership.id == issuer.id).values(token_key=new_token_key())
        )
        await session.commit()
    assert (await env.client.get("/api/organisation", headers=issuer.headers)).status_code == 401
    assert (await _verify(env, token, stream=stream["name"]))[0] == 200

    async with env.runtime.database.session() as session:  # "Delete user"
        await session.execute(delete(Membership).where(Membership.id == issuer.id))
        await session.commit()
    assert (await _verify(env, token, stream=stream["name"]))[0] == 200


async def test_key_rotation_keeps_old_tokens_until_revoke_old(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    admin = await env.member(org)
    first = await playback_token(env, org)
    first_kid = jwt.get_unverified_header(first)["kid"]

    rotated = await env.client.post("/api/organisation/playback-keys/rotate", headers=admin.headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["retired"] == [first_kid] and rotated.json()["revoked"] == []
    second_kid = rotated.json()["kid"]
    second = await playback_token(env, org)
    assert jwt.get_unverified_header(second)["kid"] == second_kid
    # The retired key keeps verifying what it signed, and stays published while those tokens live.
    assert (await _verify(env, first))[0] == 200
    published = {k["kid"] for k in (await env.client.get("/.well-known/jwks.json")).json()["keys"]}
    assert published == {first_kid, second_kid}

    ended = await env.client.post(
        "/api/organisation/playback-keys/rotate", json={"revokeOld": True}, headers=admin.headers
    )
    assert sorted(ended.json()["revoked"]) == sorted([first_kid, second_kid])
    for token in (first, second):
        assert _refused(await _verify(env, token)) == (403, 1002, "key_revoked")
    published = {k["kid"] for k in (await env.client.get("/.well-known/jwks.json")).json()["keys"]}
    assert published == {ended.json()["kid"]}
    third = await playback_token(env, org)
    assert (await _verify(env, third))[0] == 200
    actions = [entry.action for entry in await audit_entries(env, org=org)]
    assert actions.count("playback.keys_rotated") == 2 and "playback.key_created" in actions


async def test_revocation(env: Env) -> None:
    org = await env.org(packages=["secure_playback"])
    admin = await env.member(org)
    revocable = await playback_token(env, org, orgawide=True, revocable=True)
    assert (await _verify(env, revocable))[0] == 200

    response = await env.client.post(REVOKE, json={"token": revocable}, headers=admin.headers)
    assert response.status_code == 204 and response.content == b""
    assert _refused(await _verify(env, revocable)) == (403, 1002, "token_revoked")
    again = await env.client.post(REVOKE, json={"token": revocable}, headers=org.api_headers)
    assert again.status_code == 204  # revoking twice is not an error

    lasting = await playback_token(env, org, orgawide=True)
    refused = await env.client.post(REVOKE, json={"token": lasting}, headers=admin.headers)
    assert _refused((refused.status_code, refused.json())) == (400, 2011, "not_revocable")
    assert (await _verify(env, lasting))[0] == 200

    (entry,) = await audit_entries(env, org=org, action="playback.token_revoked")
    assert entry.target_id == _claims(revocable)["jti"]
    assert revocable not in json.dumps([entry.before, entry.after])
