"""An account's password: changing it (knowing the current one) and resetting it by a mailed link.

Either way the account's other sessions end and its unused reset links stop; hashing itself is
``streamward.passwords``, the policy ``streamward.password_policy``.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authn.account_audit import Memberships, memberships_of, record_for_account
from streamward.authn.account_sessions import account_sessions
from streamward.authn.mail import MailMessage
from streamward.authn.mfa.challenges import end_password_challenges
from streamward.authn.models import BintuSession, PasswordReset
from streamward.authz.principal import Principal
from streamward.crypto import digest, new_token
from streamward.db import utcnow
from streamward.errors import AppError, BadRequest, RateLimited, Unauthenticated
from streamward.limits import LoginThrottle
from streamward.password_policy import check_password
from streamward.passwords import hash_password, verify_password
from streamward.users.models import Account, normalise_email
from streamward.users.service import lock_account

RESET_TOKEN_PREFIX = "swr"
RESET_LINK_LIFETIME = timedelta(hours=1)
# At most one reset mail per account this often: the public form must not flood an inbox.
RESET_MAIL_INTERVAL = timedelta(minutes=1)


class WrongPassword(AppError):
    status_code = 400
    code = "wrong_password"
    message = "The current password is wrong."


class InvalidResetLink(AppError):
    status_code = 400
    code = "reset_link_invalid"
    message = "This password reset link is not valid: unknown, expired or already used."


async def _retire_reset_links(session: AsyncSession, account_id: uuid.UUID) -> None:
    await session.execute(
        update(PasswordReset)
        .where(PasswordReset.account_id == account_id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def change_password(
    session: AsyncSession,
    throttle: LoginThrottle,
    principal: Principal,
    *,
    current_password: str,
    new_password: str,
) -> None:
    """Change one's own password; every other session of the account ends, the presented one stays.

    Wrong guesses of the current password count against the same per-account budget as failed
    logins: a stolen session must not become a way to brute-force the password.
    """
    if principal.session_id is None or principal.account_id is None or principal.email is None:
        raise BadRequest("Only a member (bintu token) has a password to change.", code="not_a_session")
    wait = await throttle.failures_per_account.retry_after(principal.email)
    if wait:
        raise RateLimited(wait)
    check_password(new_password)
    # The account is locked before anything else, in a change as in a reset: it waits for a login or
    # a second step under way, whose session and challenge it then ends with the others, and a change
    # and a reset of one account queue (a reset that used up its link first deadlocked with a change).
    account = await lock_account(session, principal.account_id)
    if account is None:  # removed since the request was authenticated
        raise Unauthenticated()
    if not await verify_password(account.password_hash, current_password):
        await throttle.failures_per_account.take(principal.email)
        raise WrongPassword()
    account.password_hash = await hash_password(new_password)
    # The account's lock waited for a login and a second step under way: their challenges and
    # sessions are seen now, and ended.
    await end_password_challenges(session, account.id)
    ended = await session.execute(
        delete(BintuSession).where(account_sessions(account.id), BintuSession.id != principal.session_id)
    )
    await _retire_reset_links(session, account.id)
    record(
        session,
        Actor.of(principal),
        "user.password_changed",
        organisation_id=principal.organisation_id,
        target_type="user",
        target_id=principal.membership_id,
        after={"otherSessionsEnded": ended.rowcount},  # type: ignore[attr-defined]
    )


def reset_url(base_url: str, token: str) -> str:
    return f"{base_url}/password/reset/{token}"


def _reset_mail(email: str, url: str) -> MailMessage:
    return MailMessage(
        to=email,
        subject="Reset your Streamward password",
        body=(
            "Someone, hopefully you, asked to reset the password of the Streamward account "
            f"{email}.\n\nChoose a new password here within one hour; the link works once:\n\n"
            f"    {url}\n\n"
            "If it was not you, ignore this message: your password stays as it is.\n"
        ),
    )


async def request_password_reset(
    session: AsyncSession, throttle: LoginThrottle, *, email: str, client_address: str, base_url: str
) -> MailMessage | None:
    """The mail to send, or None (unknown email, or a link was sent moments ago). The caller answers
    the same either way and sends the mail after the response, so neither the answer nor its timing
    tells whether the email has an account."""
    wait = await throttle.per_address.take(client_address)
    if wait:
        raise RateLimited(wait)
    email = normalise_email(email)
    account = (await session.execute(select(Account).where(Account.email == email))).scalar_one_or_none()
    if account is None:
        return None
    now = utcnow()
    recent = await session.scalar(
        select(PasswordReset.id)
        .where(PasswordReset.account_id == account.id, PasswordReset.created_at > now - RESET_MAIL_INTERVAL)
        .limit(1)
    )
    if recent is not None:
        return None
    token = new_token(RESET_TOKEN_PREFIX)
    session.add(
        PasswordReset(
            account_id=account.id,
            token_hash=digest(token),
            created_at=now,
            expires_at=now + RESET_LINK_LIFETIME,
        )
    )
    record_for_account(
        session,
        Actor("anonymous", email, client_address),
        "user.password_reset_requested",
        await memberships_of(session, account.id),
    )
    return _reset_mail(account.email, reset_url(base_url, token))


async def complete_password_reset(
    session: AsyncSession, token: str, *, new_password: str, client_address: str
) -> None:
    """Set a new password with a reset link. The link is used up by a conditional UPDATE (so two
    requests racing with it cannot both succeed), every other link of the account stops, and every
    session of the account ends: whoever knew the old password is logged out."""
    check_password(new_password)
    reset = (
        await session.execute(
            select(PasswordReset).where(
                PasswordReset.token_hash == digest(token),
                PasswordReset.used_at.is_(None),
                PasswordReset.expires_at > utcnow(),
            )
        )
    ).scalar_one_or_none()
    if reset is None:
        raise InvalidResetLink()
    password_hash = await hash_password(new_password)
    account = await lock_account(session, reset.account_id)  # first: as in change_password
    if account is None:  # deleted meanwhile (its links went with it)
        raise InvalidResetLink()
    now = utcnow()
    consumed = await session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None), PasswordReset.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if consumed.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidResetLink()
    await _retire_reset_links(session, reset.account_id)
    account.password_hash = password_hash
    await end_password_challenges(session, account.id)  # after the account's lock: as above
    await session.execute(delete(BintuSession).where(account_sessions(account.id)))
    _record_reset(session, account, await memberships_of(session, account.id), client_address)


def _record_reset(
    session: AsyncSession, account: Account, memberships: Memberships, client_address: str
) -> None:
    """The reset in each organisation of the account, as done by its member there (whoever holds
    the link speaks for the account); outside any organisation when it has none."""
    if not memberships:
        record(
            session,
            Actor("anonymous", account.email, client_address),
            "user.password_reset",
            organisation_id=None,
        )
    for membership_id, organisation_id in memberships:
        record(
            session,
            Actor(f"user:{membership_id}", account.email, client_address),
            "user.password_reset",
            organisation_id=organisation_id,
            target_type="user",
            target_id=membership_id,
        )
