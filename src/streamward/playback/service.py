"""The playback-token service (DOMAIN.md "Playback tokens"): issue, verify, revoke.

Tokens are JWTs signed with the organisation's Ed25519 key (header ``alg: EdDSA`` and ``kid``). They
are not tied to the issuer's bintu token or token key: a token reset or the deletion of the issuing
user leaves them valid until they expire, as documented. Errors carry the documented numeric codes.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authz.principal import Principal
from streamward.authz.scoping import scoped
from streamward.crypto import SecretBox
from streamward.db import LookupSource
from streamward.orgs.models import organisation_of
from streamward.orgs.packages import require_package
from streamward.playback import keys
from streamward.playback.errors import (
    NOT_REVOCABLE,
    OTHER_ORGANISATION,
    PARAMETER_MISSING,
    TOKEN_EXPIRED,
    SplayError,
    bad_parameter,
    malformed,
    refused,
)
from streamward.playback.keys import VerifyingKey
from streamward.playback.models import PlaybackRevocation
from streamward.playback.token_state import PresentedStream, token_state, unknown_key
from streamward.streams.models import Stream, StreamState

ALGORITHM = "EdDSA"  # the only one accepted: no "none", no HMAC with a public key as secret
AUDIENCE = "playback"
TOKEN_TYPE = "playback"
DEFAULT_LIFETIME = timedelta(hours=24)
MAX_REVOCABLE_LIFETIME = timedelta(hours=24)  # bounds how long a revocation must be remembered
MAX_LIFETIME = timedelta(days=365)
REQUIRED_CLAIMS = ["iss", "aud", "jti", "iat", "nbf", "exp"]
# Tokens are issued by one process and verified by another: tolerate small clock differences, or a
# token issued "now" could be refused as not yet valid by a verifier a second behind.
CLOCK_LEEWAY_SECONDS = 10
# A token verifies until exp + leeway, so its revocation must be remembered at least that long; the
# leeway once more, because the process forgetting it may be ahead of a verifier's clock by as much
# as the leeway tolerates. Derived from the leeway, so the two cannot drift apart.
REVOCATION_KEPT_AFTER_EXP_SECONDS = 2 * CLOCK_LEEWAY_SECONDS

# Where the service reads the time (Unix seconds), looked up at each use: tests replace it to step
# through a token's life.
clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class TokenRequest:
    """What a caller asks for; exactly one of streams, group_id, org_wide."""

    streams: list[str] | None = None
    group_id: str | None = None
    org_wide: bool = False
    nbf: int | None = None
    exp: int | None = None
    domain: str | None = None
    ip: str | None = None
    tag: str | None = None
    user: str | None = None
    revocable: bool = False
    force_disconnect: bool = False


def _scope_claims(request: TokenRequest) -> dict[str, Any]:
    scopes: dict[str, Any] = {}
    if request.streams:
        scopes["streams"] = request.streams
    if request.group_id:
        scopes["groupid"] = request.group_id
    if request.org_wide:
        scopes["orgawide"] = True
    if len(scopes) != 1:
        raise SplayError(
            PARAMETER_MISSING,
            "scope_required",
            "Give exactly one scope: streams, groupid, or orgawide: true.",
            status_code=400,
        )
    return scopes


def _time_claims(request: TokenRequest, now: int) -> tuple[int, int]:
    exp = request.exp if request.exp is not None else now + int(DEFAULT_LIFETIME.total_seconds())
    nbf = request.nbf if request.nbf is not None else now
    limit = MAX_REVOCABLE_LIFETIME if request.revocable else MAX_LIFETIME
    if exp <= now:
        raise bad_parameter("exp must be in the future.", exp=exp)
    if exp - now > limit.total_seconds():
        what = "A revocable token" if request.revocable else "A token"
        raise bad_parameter(f"{what} may live at most {limit.days or 1} day(s).", exp=exp)
    if nbf >= exp:
        raise bad_parameter("nbf must be before exp.", nbf=nbf)
    return nbf, exp


async def _check_streams(session: AsyncSession, principal: Principal, names: list[str]) -> None:
    statement = scoped(select(Stream.name), Stream, principal).where(
        Stream.name.in_(names), Stream.state != StreamState.DELETED.value
    )
    known = set((await session.execute(statement)).scalars())
    missing = [name for name in names if name not in known]
    if missing:
        # Unknown and foreign streams get the same answer: the reply must not tell them apart.
        raise SplayError(
            OTHER_ORGANISATION,
            "stream_not_in_organisation",
            "Some streams are not streams of your organisation.",
            status_code=403,
            details={"streams": missing},
        )


async def issue(
    session: AsyncSession, box: SecretBox, principal: Principal, request: TokenRequest, *, issuer: str
) -> str:
    require_package(organisation_of(principal).packages, "secure_playback")
    scope = _scope_claims(request)
    if request.streams:
        await _check_streams(session, principal, request.streams)
    now = int(clock())
    nbf, exp = _time_claims(request, now)
    key = await keys.active_key(session, box, principal.organisation_id, actor=Actor.of(principal))
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "typ": TOKEN_TYPE,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "nbf": nbf,
        "exp": exp,
        "org": str(principal.organisation_id),
        **scope,
        "revocable": request.revocable,
        "forceDisconnect": request.force_disconnect,
    }
    for name in ("domain", "ip", "tag", "user"):
        value = getattr(request, name)
        if value is not None:
            claims[name] = value
    token = jwt.encode(claims, keys.private_key_of(box, key), algorithm=ALGORITHM, headers={"kid": key.kid})
    await keys.note_token_expiry(session, key, datetime.fromtimestamp(exp, UTC))
    return token


# A JWS compact serialisation: three base64url segments (no padding), the last one the signature
# (empty in an unsecured token: refused for its algorithm).
_COMPACT = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")


def _b64url(segment: str) -> bytes:
    """A segment's bytes, when the segment is their one encoding: the unused low bits of its last
    character must be zero, as PyJWT required, or one token would verify under sixteen spellings
    (a blocklist or rate limit keyed by the token text would be sidestepped)."""
    decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment.encode("ascii"):
        raise ValueError("not the canonical encoding")
    return decoded


@dataclass(frozen=True)
class PresentedToken:
    """A playback token as presented, split and its header read; nothing in it is believed yet.

    Tokens are read here rather than by PyJWT (which issues them): PyJWT parsed every token twice
    (once for the key id, once to verify) and its generic checks around the signature cost as much
    as the signature itself, on the path every player start takes (``bench/player_reads.py``
    times both). What it checked is checked here: the one algorithm, no critical extension, the
    Ed25519 signature over the first two segments (by ``cryptography``) before any claim is read,
    then the claims."""

    kid: str | None
    signing_input: bytes
    signature: bytes
    payload: str

    @classmethod
    def parse(cls, token: str) -> PresentedToken:
        compact = _COMPACT.fullmatch(token)
        if compact is None:
            raise malformed("malformed_token", "This is not a playback token.")
        header_segment, payload_segment, signature_segment = compact.groups()
        try:
            header = json.loads(_b64url(header_segment))
            signature = _b64url(signature_segment)
        except (ValueError, RecursionError):  # binascii.Error and JSONDecodeError are ValueErrors
            raise malformed("malformed_token", "This is not a playback token.") from None
        if not isinstance(header, dict):
            raise malformed("malformed_token", "This is not a playback token.")
        if header.get("alg") != ALGORITHM:
            raise malformed("algorithm_not_allowed", f"Playback tokens are signed with {ALGORITHM} only.")
        if "crit" in header:  # an extension the token says must be understood: none is
            raise malformed("invalid_token", "The token's signature or claims are not valid.")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise malformed("malformed_token", "This is not a playback token.")
        # The regular expression admits ASCII only: the encoding cannot fail.
        signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
        return cls(kid, signing_input, signature, payload_segment)

    def claims(self, key: VerifyingKey, *, issuer: str, now: float) -> dict[str, Any]:
        """The claims, once the signature is ``key``'s and every claim checks out."""
        return checked_claims(_claims_of(self.signed_payload(key)), key, issuer=issuer, now=now)

    def signed_payload(self, key: VerifyingKey) -> bytes:
        """The payload's JSON, once the signature is ``key``'s; none of its claims is read yet."""
        try:
            key.public_key.verify(self.signature, self.signing_input)
            return _b64url(self.payload)
        except (InvalidSignature, ValueError):
            raise malformed("invalid_token", "The token's signature or claims are not valid.") from None


def _claims_of(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        raise malformed("invalid_token", "The token's signature or claims are not valid.") from None
    if not isinstance(claims, dict):
        raise malformed("invalid_token", "The token's signature or claims are not valid.")
    return claims


def checked_claims(claims: dict[str, Any], key: VerifyingKey, *, issuer: str, now: float) -> dict[str, Any]:
    """``claims``, a payload signed by ``key``, when every claim checks out at ``now``."""
    if any(name not in claims for name in REQUIRED_CLAIMS) or not isinstance(claims["jti"], str):
        raise malformed("invalid_token", "The token's signature or claims are not valid.")
    audience = claims["aud"]
    if not (audience == AUDIENCE or (isinstance(audience, list) and AUDIENCE in audience)):
        raise malformed("wrong_audience", "The token is not meant for playback.")
    if (
        claims["iss"] != issuer
        or claims.get("typ") != TOKEN_TYPE
        or claims.get("org") != str(key.organisation_id)
    ):
        raise malformed("invalid_token", "The token's signature or claims are not valid.")
    _check_times(claims, now)
    return claims


# Signatures already verified, kept by the token's text. A live event's audience often presents one
# token (the page embeds it for every viewer), and the Ed25519 check was a quarter of a verify's
# server time under load (py-spy, bench/player_reads.py). A signature that verified once verifies
# under the same public key forever: a kept one is taken again only while the token's kid still
# names that public key (it never changes for a kid; were a row ever changed under it, the token is
# checked in full again). Nothing that can change is kept: the key's and the token's revocation,
# the stream and the times are still checked at every verify, and the claims are read anew from
# the kept JSON (no caller can change what the next one reads). Only a token whose signature
# verified is kept, so a forged one costs its check every time and takes no room; a token longer
# than any ordinary one is not kept (the room stays bounded in bytes, not only in entries); the
# least recently used goes when the cache is full. Per process.
MAX_VERIFIED_TOKENS = 4096
MAX_KEPT_TOKEN_LENGTH = 4096  # characters; a token for one stream is about 600
_verified: OrderedDict[str, tuple[VerifyingKey, bytes]] = OrderedDict()


def _keep_verified(token: str, key: VerifyingKey, payload: bytes) -> None:
    if len(token) > MAX_KEPT_TOKEN_LENGTH:
        return
    _verified[token] = (key, payload)
    _verified.move_to_end(token)
    if len(_verified) > MAX_VERIFIED_TOKENS:
        _verified.popitem(last=False)


async def _key_named(source: LookupSource, kid: str | None) -> VerifyingKey:
    key = await keys.verifying_key(source, kid) if kid is not None and len(kid) <= 64 else None
    if key is None:
        raise unknown_key()
    return key


def _same_key(key: VerifyingKey, signer: VerifyingKey) -> bool:
    return key is signer or key.public_key.public_bytes_raw() == signer.public_key.public_bytes_raw()


async def _signed_claims(
    source: LookupSource, token: str, *, issuer: str
) -> tuple[dict[str, Any], VerifyingKey]:
    """Signature, algorithm, key, times, audience, issuer and type; raises SplayError. Touches the
    database only the first time this process meets the token's key (its public half is kept), and
    checks the signature only the first time it meets the token (``_verified``)."""
    kept = _verified.get(token)
    if kept is not None:
        signer, payload = kept
        key = await _key_named(source, signer.kid)
        if _same_key(key, signer):
            if token in _verified:  # it may have gone while the key was read
                _verified.move_to_end(token)
            return checked_claims(_claims_of(payload), key, issuer=issuer, now=clock()), key
    presented = PresentedToken.parse(token)
    key = await _key_named(source, presented.kid)
    payload = presented.signed_payload(key)
    _keep_verified(token, key, payload)
    return checked_claims(_claims_of(payload), key, issuer=issuer, now=clock()), key


def _check_times(claims: dict[str, Any], now: float) -> None:
    times = [claims[name] for name in ("iat", "nbf", "exp")]
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in times):
        raise malformed("invalid_token", "The token's times must be whole Unix seconds.")
    iat, nbf, exp = times
    if now >= exp + CLOCK_LEEWAY_SECONDS:
        raise SplayError(TOKEN_EXPIRED, "token_expired", "The token has expired.", status_code=403)
    if max(iat, nbf) > now + CLOCK_LEEWAY_SECONDS:
        raise SplayError(TOKEN_EXPIRED, "token_not_yet_valid", "The token is not valid yet.", status_code=403)


@dataclass(frozen=True)
class Presentation:
    """Where a token is being used, as far as the verifier (media server, player backend) tells."""

    stream: str | None = None
    domain: str | None = None
    ip: str | None = None


def _domain_matches(allowed: str, domain: str) -> bool:
    allowed, domain = allowed.lower().rstrip("."), domain.lower().rstrip(".")
    if allowed.startswith("*."):
        return domain.endswith(allowed[1:])
    return domain == allowed


def _address_matches(allowed: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(allowed, strict=False)
    except ValueError:
        return False


def _check_presentation(claims: dict[str, Any], where: Presentation, stream: PresentedStream | None) -> None:
    if where.stream is not None:
        if stream is not None and str(stream.organisation_id) != claims["org"]:
            raise SplayError(
                OTHER_ORGANISATION,
                "other_organisation",
                "The token belongs to another organisation than the stream.",
                status_code=403,
            )
        if stream is None or stream.state == StreamState.DELETED:
            raise refused("scope_mismatch", "The token does not grant this stream.")
        granted = (
            claims.get("orgawide") is True
            or where.stream in (claims.get("streams") or [])
            or ("groupid" in claims and claims["groupid"] == stream.group_id)
        )
        if not granted:
            raise refused("scope_mismatch", "The token does not grant this stream.")
    # A restriction the token carries is checked whenever it exists: a verifier that does not say
    # where the token is used cannot pass a restricted token (fail closed).
    if "domain" in claims:
        if where.domain is None:
            raise bad_parameter("This token is bound to a domain: send the domain it is used on.")
        if not _domain_matches(claims["domain"], where.domain):
            raise refused("domain_mismatch", "The token is not valid on this domain.")
    if "ip" in claims:
        if where.ip is None:
            raise bad_parameter("This token is bound to a client address: send the ip it is used from.")
        if not _address_matches(claims["ip"], where.ip):
            raise refused("ip_mismatch", "The token is not valid from this address.")


async def verify(source: LookupSource, token: str, where: Presentation, *, issuer: str) -> dict[str, Any]:
    """The token's claims when it may be used as presented; raises SplayError otherwise.

    The signature is checked first, without the database (a forged token costs no query); then one
    round trip reads what revocation may have changed and the stream it is presented for (on
    PostgreSQL on the look-up pool: committed rows, so a revocation from any process applies to the
    next check)."""
    claims, key = await _signed_claims(source, token, issuer=issuer)
    revocable = bool(claims.get("revocable"))
    state = await token_state(source, key, jti=str(claims["jti"]) if revocable else None, stream=where.stream)
    if revocable and state.token_revoked:
        raise SplayError(TOKEN_EXPIRED, "token_revoked", "The token was revoked.", status_code=403)
    _check_presentation(claims, where, state.stream)
    return claims


async def revoke(session: AsyncSession, principal: Principal, token: str, *, issuer: str) -> None:
    """Revoke a revocable token of the caller's organisation; revoking twice is not an error."""
    claims, key = await _signed_claims(session, token, issuer=issuer)
    await token_state(session, key, jti=None, stream=None)  # a revoked key's tokens are refused
    if key.organisation_id != principal.organisation_id:
        raise SplayError(
            OTHER_ORGANISATION,
            "other_organisation",
            "The token belongs to another organisation.",
            status_code=403,
        )
    if not claims.get("revocable"):
        raise SplayError(
            NOT_REVOCABLE,
            "not_revocable",
            "The token was not issued as revocable; rotate the signing keys with revokeOld to end it.",
            status_code=409,
        )
    jti = str(claims["jti"])
    now_seconds = clock()
    now = datetime.fromtimestamp(now_seconds, UTC)
    # Housekeeping: forget revocations of tokens that can no longer verify anyway. Not at their exp:
    # within the leeway after it a token still verifies, and without its revocation it would again.
    forget_expired_before = datetime.fromtimestamp(now_seconds - REVOCATION_KEPT_AFTER_EXP_SECONDS, UTC)
    await session.execute(
        scoped(delete(PlaybackRevocation), PlaybackRevocation, principal).where(
            PlaybackRevocation.expires_at < forget_expired_before
        )
    )
    if await session.get(PlaybackRevocation, jti) is not None:
        return
    expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
    try:
        async with session.begin_nested():
            session.add(
                PlaybackRevocation(
                    jti=jti, organisation_id=principal.organisation_id, expires_at=expires_at, revoked_at=now
                )
            )
    except IntegrityError:
        return  # revoked concurrently: the outcome is the same, and that request audits it
    record(
        session,
        Actor.of(principal),
        "playback.token_revoked",
        organisation_id=principal.organisation_id,
        target_type="playback_token",
        target_id=jti,
        after={"expiresAt": expires_at.isoformat()},
    )
