"""Credentials: login, bintu tokens (sessions), the API key; from a credential to a Principal."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authn.mail import MailMessage
from streamward.authn.models import BintuSession, PasswordReset
from streamward.authz.permissions import Role
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped
from streamward.crypto import digest, new_token
from streamward.db import utcnow
from streamward.errors import AppError, BadRequest, InvalidCredentials, NotFound, RateLimited
from streamward.limits import LoginThrottle
from streamward.orgs.models import Organisation
from streamward.password_policy import check_password
from streamward.passwords import hash_password, needs_rehash, verify_password
from streamward.request_context import note_login, note_rate_limit
from streamward.roles.lookup import resolve_role
from streamward.users.models import Account, Membership, normalise_email
from streamward.users.service import find_account

log = logging.getLogger(__name__)

SESSION_TOKEN_PREFIX = "swt"
API_KEY_PREFIX = "swk"
# last_used_at is bookkeeping, not security: refresh it at most this often per session.
LAST_USED_RESOLUTION = timedelta(minutes=5)


# Login refusals keep the request's changes: the audit entry of the failed attempt.
class LoginFailed(InvalidCredentials):
    keep_changes = True


class LoginRateLimited(RateLimited):
    keep_changes = True


class OrganisationChoiceRequired(AppError):
    status_code = 409
    code = "organisation_required"
    message = "This account belongs to several organisations; say which one."
    keep_changes = True


class NotAMember(NotFound):
    code = "organisation_not_found"
    message = "You are not a member of that organisation."
    keep_changes = True


class WrongPassword(AppError):
    status_code = 400
    code = "wrong_password"
    message = "The current password is wrong."


class InvalidResetLink(AppError):
    status_code = 400
    code = "reset_link_invalid"
    message = "This password reset link is not valid: unknown, expired or already used."


@dataclass(frozen=True)
class IssuedToken:
    token: str
    session: BintuSession


@dataclass(frozen=True)
class LoginResult:
    issued: IssuedToken
    membership: Membership
    organisation: Organisation
    role: Role | None
    account: Account


async def issue_token(
    session: AsyncSession, membership: Membership, lifetime: timedelta, *, name: str | None = None
) -> IssuedToken:
    token = new_token(SESSION_TOKEN_PREFIX)
    now = utcnow()
    record = BintuSession(
        token_hash=digest(token),
        membership_id=membership.id,
        token_key=membership.token_key,
        name=name,
        created_at=now,
        expires_at=now + lifetime,
        last_used_at=now,
    )
    session.add(record)
    await session.flush()
    return IssuedToken(token=token, session=record)


async def _memberships_of(session: AsyncSession, account_id: uuid.UUID) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(membership id, organisation id) of every membership of an account."""
    statement = select(Membership.id, Membership.organisation_id).where(Membership.account_id == account_id)
    return [(row.id, row.organisation_id) for row in await session.execute(statement)]


def _record_for_account(
    session: AsyncSession,
    actor: Actor,
    action: str,
    memberships: list[tuple[uuid.UUID, uuid.UUID]],
    *,
    after: dict[str, object] | None = None,
) -> None:
    """One audit entry in the log of each organisation the account belongs to (none: outside any)."""
    if not memberships:
        record(session, actor, action, organisation_id=None, after=after)
    for membership_id, organisation_id in memberships:
        record(
            session,
            actor,
            action,
            organisation_id=organisation_id,
            target_type="user",
            target_id=membership_id,
            after=after,
        )


async def login(
    session: AsyncSession,
    throttle: LoginThrottle,
    *,
    email: str,
    password: str,
    organisation_id: uuid.UUID | None,
    client_address: str,
    lifetime: timedelta,
) -> LoginResult:
    """Every attempt leaves an audit entry: a success in the organisation logged into; a failure in
    each organisation of the account, or outside any when the email is unknown (or the attempt was
    throttled, which is decided before the account is looked up)."""
    email = normalise_email(email)
    anonymous = Actor("anonymous", email, client_address)
    wait = await throttle.per_address.take(client_address)
    wait = wait or await throttle.failures_per_account.retry_after(email)
    if wait:
        if await throttle.first_refusal(f"{client_address}|{email}", wait):
            record(
                session,
                anonymous,
                "user.login_failed",
                organisation_id=None,
                after={"reason": "rate_limited"},
            )
        note_login("rate_limited")
        note_rate_limit("login")
        raise LoginRateLimited(wait)

    account = await find_account(session, email)
    # Unknown email and wrong password: same work, same answer.
    if not await verify_password(account.password_hash if account else None, password) or account is None:
        await throttle.failures_per_account.take(email)
        memberships = await _memberships_of(session, account.id) if account else []
        _record_for_account(
            session, anonymous, "user.login_failed", memberships, after={"reason": "invalid_credentials"}
        )
        note_login("invalid_credentials")
        raise LoginFailed()

    rows = (
        await session.execute(
            select(Membership, Organisation)
            .join(Organisation, Organisation.id == Membership.organisation_id)
            .where(Membership.account_id == account.id)
            .order_by(Organisation.name, Organisation.id)
        )
    ).all()
    memberships = [(membership.id, organisation.id) for membership, organisation in rows]
    if not rows:
        _record_for_account(session, anonymous, "user.login_failed", [], after={"reason": "no_membership"})
        note_login("no_membership")
        raise LoginFailed()
    if organisation_id is not None:
        rows = [row for row in rows if row[1].id == organisation_id]
        if not rows:
            _record_for_account(
                session,
                anonymous,
                "user.login_failed",
                memberships,
                after={"reason": "organisation_not_found"},
            )
            note_login("organisation_not_found")
            raise NotAMember()
    elif len(rows) > 1:
        _record_for_account(
            session, anonymous, "user.login_failed", memberships, after={"reason": "organisation_required"}
        )
        note_login("organisation_required")
        raise OrganisationChoiceRequired(
            details={"organisations": [{"id": str(org.id), "name": org.name} for _, org in rows]}
        )
    membership, organisation = rows[0]

    if needs_rehash(account.password_hash):
        account.password_hash = await hash_password(password)
    issued = await issue_token(session, membership, lifetime)
    role = await resolve_role(session, organisation.id, membership.role)
    record(
        session,
        Actor(f"user:{membership.id}", email, client_address),
        "user.login",
        organisation_id=organisation.id,
        target_type="user",
        target_id=membership.id,
    )
    note_login("success")
    return LoginResult(issued, membership, organisation, role, account)


async def logout(session: AsyncSession, principal: Principal) -> None:
    if principal.session_id is not None:
        await session.execute(delete(BintuSession).where(BintuSession.id == principal.session_id))


def _account_sessions(account_id: uuid.UUID) -> ColumnElement[bool]:
    """Sessions of every membership of an account (a password is the account's, not one membership's)."""
    return BintuSession.membership_id.in_(select(Membership.id).where(Membership.account_id == account_id))


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
    account = await session.get(Account, principal.account_id)
    assert account is not None  # the session was just authenticated in this transaction
    if not await verify_password(account.password_hash, current_password):
        await throttle.failures_per_account.take(principal.email)
        raise WrongPassword()
    account.password_hash = await hash_password(new_password)
    ended = await session.execute(
        delete(BintuSession).where(_account_sessions(account.id), BintuSession.id != principal.session_id)
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


RESET_TOKEN_PREFIX = "swr"
RESET_LINK_LIFETIME = timedelta(hours=1)
# At most one reset mail per account this often: the public form must not flood an inbox.
RESET_MAIL_INTERVAL = timedelta(minutes=1)


def reset_url(base_url: str, token: str) -> str:
    return f"{base_url}/password/reset/{token}"


async def _retire_reset_links(session: AsyncSession, account_id: uuid.UUID) -> None:
    await session.execute(
        update(PasswordReset)
        .where(PasswordReset.account_id == account_id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
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
    _record_for_account(
        session,
        Actor("anonymous", email, client_address),
        "user.password_reset_requested",
        await _memberships_of(session, account.id),
    )
    return MailMessage(
        to=account.email,
        subject="Reset your Streamward password",
        body=(
            "Someone, hopefully you, asked to reset the password of the Streamward account "
            f"{account.email}.\n\nChoose a new password here within one hour; the link works once:\n\n"
            f"    {reset_url(base_url, token)}\n\n"
            "If it was not you, ignore this message: your password stays as it is.\n"
        ),
    )


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
    account = await session.get(Account, reset.account_id)
    assert account is not None  # the link's foreign key cascades on account deletion
    account.password_hash = password_hash
    await session.execute(delete(BintuSession).where(_account_sessions(account.id)))
    memberships = await _memberships_of(session, account.id)
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


MAX_NAMED_TOKEN_DAYS = 365


async def create_named_token(
    session: AsyncSession, principal: Principal, *, name: str, expires_in_days: int
) -> IssuedToken:
    """A long-lived bintu token of the calling user, for automation. Issued under the user's token
    key like any other, so renewing the key (or a role change) ends it."""
    if principal.membership_id is None:
        raise BadRequest(
            "A named bintu token belongs to a user: create it with your bintu token, not the API key.",
            code="user_required",
        )
    if not 1 <= expires_in_days <= MAX_NAMED_TOKEN_DAYS:
        raise BadRequest(f"expiresInDays must be 1 to {MAX_NAMED_TOKEN_DAYS}.", code="invalid_value")
    membership = await get_scoped(session, Membership, principal.membership_id, principal, what="user")
    issued = await issue_token(session, membership, timedelta(days=expires_in_days), name=name)
    record(
        session,
        Actor.of(principal),
        "token.created",
        organisation_id=principal.organisation_id,
        target_type="session",
        target_id=issued.session.id,
        after={"name": name, "expiresAt": issued.session.expires_at.isoformat()},
    )
    return issued
