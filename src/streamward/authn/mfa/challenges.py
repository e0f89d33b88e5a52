"""Short-lived, single-use ceremonies: the second step of a login, a passwordless passkey login, a
passkey registration.

The client holds an opaque token ("swc_…"); only its SHA-256 is stored, like every other credential.
A challenge is bound to the client address that opened it and (except for a passwordless login) to
the account; it expires after ``CHALLENGE_LIFETIME`` and is used up by its success or by
``MAX_WRONG_ANSWERS`` wrong answers, whichever comes first.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from streamward.authn.mfa.errors import ChallengeEndedMeanwhile, InvalidChallenge
from streamward.authn.mfa.models import LoginChallenge
from streamward.crypto import digest, new_token
from streamward.db import utcnow

CHALLENGE_LIFETIME = timedelta(minutes=5)
MAX_WRONG_ANSWERS = 5
CHALLENGE_TOKEN_PREFIX = "swc"
# A token is "swc_" and 43 base64url characters; anything much longer is not one (and is not hashed).
MAX_TOKEN_LENGTH = 128

# What a challenge is for; a challenge opened for one purpose is refused for any other.
MFA = "mfa"
PASSWORDLESS = "passwordless"
PASSKEY_REGISTRATION = "passkey_registration"

# WebAuthn asks for at least 16 random bytes; 32 as the webauthn package's own default.
WEBAUTHN_CHALLENGE_BYTES = 32
_ADDRESS_LENGTH = LoginChallenge.__table__.c.client_address.type.length  # type: ignore[attr-defined]


def _bound_address(client_address: str) -> str:
    # An IPv6 address with a zone fits easily; the column's length is only a guard.
    return client_address[:_ADDRESS_LENGTH]


async def open_challenge(
    session: AsyncSession,
    *,
    purpose: str,
    client_address: str,
    account_id: uuid.UUID | None = None,
    membership_id: uuid.UUID | None = None,
    webauthn: bool = False,
) -> tuple[str, LoginChallenge]:
    """A new challenge (flushed) and the token that names it, to hand to the client once. With
    ``webauthn`` it carries fresh random bytes for a WebAuthn ceremony (``webauthn_challenge_bytes``)."""
    token = new_token(CHALLENGE_TOKEN_PREFIX)
    now = utcnow()
    challenge = LoginChallenge(
        token_hash=digest(token),
        purpose=purpose,
        account_id=account_id,
        membership_id=membership_id,
        client_address=_bound_address(client_address),
        webauthn_challenge=(
            base64.urlsafe_b64encode(secrets.token_bytes(WEBAUTHN_CHALLENGE_BYTES)).rstrip(b"=").decode()
            if webauthn
            else None
        ),
        attempts=0,
        created_at=now,
        expires_at=now + CHALLENGE_LIFETIME,
    )
    session.add(challenge)
    await session.flush()
    return token, challenge


def usable(challenge: LoginChallenge | None, *, purpose: str, client_address: str) -> LoginChallenge:
    """``challenge``, provided it may answer now for ``purpose`` from ``client_address``; otherwise
    InvalidChallenge, the same refusal whatever the reason (the client starts again either way)."""
    if (
        challenge is None
        or challenge.used_at is not None
        or challenge.expires_at <= utcnow()
        or challenge.purpose != purpose
        or challenge.client_address != _bound_address(client_address)
    ):
        raise InvalidChallenge()
    return challenge


def token_hash_of(token: str) -> str | None:
    """The stored digest of a client's token, or None for something that cannot be one."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return digest(token)


async def take_challenge(
    session: AsyncSession, token: str, *, purpose: str, client_address: str
) -> LoginChallenge:
    """The challenge the client names, its row locked until the transaction ends (PostgreSQL; on
    SQLite the writer's ``BEGIN IMMEDIATE`` already serialises), so that two answers to one
    challenge are judged one after the other. InvalidChallenge when unknown, expired, used, opened
    for another purpose or by another client."""
    token_hash = token_hash_of(token)
    challenge = None
    if token_hash is not None:
        challenge = (
            await session.execute(
                select(LoginChallenge).where(LoginChallenge.token_hash == token_hash).with_for_update()
            )
        ).scalar_one_or_none()
    return usable(challenge, purpose=purpose, client_address=client_address)


def webauthn_challenge_bytes(challenge: LoginChallenge) -> bytes:
    """The random bytes the WebAuthn ceremony of ``challenge`` must sign; InvalidChallenge when it
    was opened without any (a login of an account that had no passkey then)."""
    if not challenge.webauthn_challenge:
        raise InvalidChallenge()
    encoded = challenge.webauthn_challenge
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


async def count_wrong_answer(session: AsyncSession, challenge: LoginChallenge) -> None:
    """One more wrong answer; the ``MAX_WRONG_ANSWERS``-th uses the challenge up. Counted in the
    database (``attempts + 1``), not on the loaded row: a second step reads the challenge before
    it takes any lock (``authn.login_statements.second_step``), as it was before another counted. The caller
    raises a refusal that keeps its changes (InvalidSecondFactor), so the count is committed."""
    now = utcnow()
    counted = (
        await session.execute(
            update(LoginChallenge)
            .where(LoginChallenge.id == challenge.id)
            .values(
                attempts=LoginChallenge.attempts + 1,
                used_at=case(
                    (
                        LoginChallenge.attempts + 1 >= MAX_WRONG_ANSWERS,
                        func.coalesce(LoginChallenge.used_at, now),
                    ),
                    else_=LoginChallenge.used_at,
                ),
            )
            .returning(LoginChallenge.attempts, LoginChallenge.used_at)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if counted is None:  # ended meanwhile (its membership removed): nothing left to count
        raise InvalidChallenge()
    set_committed_value(challenge, "attempts", counted.attempts)
    set_committed_value(challenge, "used_at", counted.used_at)


# What a password opened: the second step of a login.
_OPENED_BY_A_PASSWORD = (MFA,)


async def end_password_challenges(session: AsyncSession, account_id: uuid.UUID) -> None:
    """Use up the account's open second steps of a login: their first step verified a password that
    is being replaced (a change or a reset, which call this once the account row is updated: a login
    whose first step was under way holds that row's share lock until it has committed its challenge,
    see ``authn.service.login``)."""
    await session.execute(
        update(LoginChallenge)
        .where(
            LoginChallenge.account_id == account_id,
            LoginChallenge.purpose.in_(_OPENED_BY_A_PASSWORD),
            LoginChallenge.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def consume(session: AsyncSession, challenge: LoginChallenge) -> None:
    """Use the challenge up on success: one conditional UPDATE, whose row count decides a race
    (the loser gets InvalidChallenge)."""
    now = utcnow()
    result = await session.execute(
        update(LoginChallenge)
        .where(LoginChallenge.id == challenge.id, LoginChallenge.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ChallengeEndedMeanwhile()
    set_committed_value(challenge, "used_at", now)
