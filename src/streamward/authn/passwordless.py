"""Signing in with a passkey alone: the login page asks any discoverable credential of this relying
party to sign a challenge, and the credential names the account. User verification is required (the
authenticator's PIN or biometric stands in for the password), so the passkey is two factors in one.

Kept apart from ``authn.mfa.passkeys`` because it finishes like a password login
(``authn.service.sign_in``), and ``authn.service`` itself asks ``passkeys`` for the second step's
options: neither imports the other through this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor
from streamward.authn import service
from streamward.authn.account_audit import memberships_of, record_for_account
from streamward.authn.mfa import challenges, passkeys
from streamward.authn.mfa.passkeys import Ceremony, RelyingParty
from streamward.errors import RateLimited
from streamward.limits import LoginThrottle
from streamward.request_context import note_login, note_rate_limit
from streamward.users.models import Account

METHOD = "passkey"


async def _charge_address(throttle: LoginThrottle, client_address: str, *, attempt: bool) -> None:
    """Both steps spend from the password login's per-address budget: together they are one login
    attempt's worth of work, and neither may be hammered. ``attempt``: this is the login attempt
    itself (counted in the login metrics), not its options."""
    wait = await throttle.per_address.take(client_address)
    if wait:
        if attempt:
            note_login("rate_limited")
        note_rate_limit("login")
        raise RateLimited(wait)


async def options(
    session: AsyncSession, throttle: LoginThrottle, rp: RelyingParty, *, client_address: str
) -> Ceremony:
    """Start a passwordless login: a challenge bound to the client, for any discoverable credential
    (no allowCredentials: the account is not known yet), user verification required."""
    await _charge_address(throttle, client_address, attempt=False)
    token, challenge = await challenges.open_challenge(
        session, purpose=challenges.PASSWORDLESS, client_address=client_address, webauthn=True
    )
    public_key = passkeys.request_options(
        rp, challenges.webauthn_challenge_bytes(challenge), [], user_verification=True
    )
    return Ceremony(token, challenge.expires_at, public_key)


async def login(
    session: AsyncSession,
    throttle: LoginThrottle,
    rp: RelyingParty,
    *,
    challenge_token: str,
    assertion: Mapping[str, Any],
    organisation_id: uuid.UUID | None,
    client_address: str,
    lifetime: timedelta,
    with_api_key: bool = False,
) -> service.LoginResult:
    """Finish a passwordless login: the assertion must answer the client's own challenge, with a
    credential of ours and user verification. A refusal counts against the challenge (the fifth
    uses it up) and is audited like a failed password login. Then as a password login: the
    membership chosen (409 organisation_required for a person in several organisations, who starts
    again naming one; the challenge is spent either way), a token issued, ``user.login`` audited."""
    await _charge_address(throttle, client_address, attempt=True)
    challenge = await challenges.take_challenge(
        session, challenge_token, purpose=challenges.PASSWORDLESS, client_address=client_address
    )
    try:
        passkey = await passkeys.verify_assertion(
            session,
            rp,
            assertion=assertion,
            challenge=challenges.webauthn_challenge_bytes(challenge),
            account_id=None,
            require_user_verification=True,
        )
    except passkeys.PasskeyRefused as refusal:
        await challenges.count_wrong_answer(session, challenge)
        await _audit_failure(session, refusal.account_id, client_address)
        raise
    await challenges.consume(session, challenge)
    account = await session.get(Account, passkey.account_id)
    if account is None:  # the passkey row cascades with its account: cannot be gone here
        raise passkeys.PasskeyRefused()
    return await service.sign_in(
        session,
        account=account,
        organisation_id=organisation_id,
        client_address=client_address,
        lifetime=lifetime,
        method=METHOD,
        with_api_key=with_api_key,
    )


async def _audit_failure(session: AsyncSession, account_id: uuid.UUID | None, client_address: str) -> None:
    """In each organisation of the credential's account; outside any when the credential is not
    ours (as a failed login of an unknown email)."""
    account = await session.get(Account, account_id) if account_id is not None else None
    memberships = await memberships_of(session, account.id) if account is not None else []
    record_for_account(
        session,
        Actor("anonymous", account.email if account else None, client_address),
        "user.login_failed",
        memberships,
        after={"reason": "invalid_second_factor", "method": METHOD},
    )
    note_login("invalid_second_factor")
