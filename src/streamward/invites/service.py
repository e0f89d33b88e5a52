"""Invitations: create, list, revoke, renew; look up and accept by token (public).

An invitation token has 256 random bits and is stored only as its SHA-256. Acceptance is decided by
one conditional UPDATE (still pending?) whose row count says who won, so an invitation is used at
most once however many requests race for it.

Accepting with an email and a password never says whether that email has an account: a new email
gets an account, an existing account's email is a sign-in with that account (its password joins,
a wrong one is a failed login, counted like one). See ``accept_invitation``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authn.principals import principal_from_token
from streamward.authn.service import LoginFailed, LoginResult, issue_token
from streamward.authz.permissions import Role
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped, scoped
from streamward.crypto import digest, new_token
from streamward.db import utcnow
from streamward.errors import AppError, BadRequest, Conflict, RateLimited, Unauthenticated
from streamward.events.catalogue import EventType
from streamward.events.outbox import emit
from streamward.invites.models import Invitation
from streamward.limits import LoginThrottle
from streamward.orgs.models import Organisation
from streamward.orgs.service import lock_organisation
from streamward.pagination import Page, keyset_page
from streamward.password_policy import check_password
from streamward.passwords import hash_password, verify_password
from streamward.roles.lookup import grantable_role, resolve_role
from streamward.users.models import Account, Membership
from streamward.users.service import (
    add_account,
    add_membership,
    checked_email,
    email_prefix,
    find_account,
)

INVITE_TOKEN_PREFIX = "swi"

Status = Literal["pending", "accepted", "expired", "revoked"]


class InvalidInvite(AppError):
    """One answer for unknown, expired, revoked and used invitations: which one it is stays private."""

    status_code = 404
    code = "invite_invalid"
    message = "This invitation link is not valid: unknown, expired, revoked or already used."


class InviteEmailMismatch(AppError):
    status_code = 403
    code = "invite_email_mismatch"
    message = "This invitation is for another email address."


class AlreadyMember(AppError):
    status_code = 409
    code = "already_member"
    message = "This account is a member of the organisation already."


class InviteNotPending(AppError):
    status_code = 409
    code = "invite_not_pending"
    message = "This invitation was accepted or revoked already."


def invitation_url(base_url: str, token: str) -> str:
    return f"{base_url}/invite/{token}"


def status_of(invitation: Invitation, now: datetime) -> Status:
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.expires_at <= now:
        return "expired"
    return "pending"


def _pending(now: datetime) -> ColumnElement[bool]:
    return and_(
        Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None), Invitation.expires_at > now
    )


def _status_condition(status: Status, now: datetime) -> ColumnElement[bool]:
    """The SQL form of ``status_of``."""
    if status == "accepted":
        return Invitation.accepted_at.is_not(None)
    if status == "revoked":
        return and_(Invitation.accepted_at.is_(None), Invitation.revoked_at.is_not(None))
    if status == "expired":
        return and_(
            Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None), Invitation.expires_at <= now
        )
    return _pending(now)


@dataclass(frozen=True)
class IssuedInvite:
    invitation: Invitation
    token: str
    url: str


def _new_token(invitation: Invitation, expires_in_days: int, base_url: str) -> IssuedInvite:
    token = new_token(INVITE_TOKEN_PREFIX)
    invitation.token_hash = digest(token)
    invitation.expires_at = utcnow() + timedelta(days=expires_in_days)
    return IssuedInvite(invitation, token, invitation_url(base_url, token))


def _described(invitation: Invitation) -> dict[str, Any]:
    """An invitation in the audit log and events: never its token or token hash."""
    return {
        "inviteId": str(invitation.id),
        "role": invitation.role,
        "email": invitation.email,
        "expiresAt": invitation.expires_at.isoformat(),
    }


async def create_invitation(
    session: AsyncSession,
    principal: Principal,
    *,
    role: str,
    email: str | None,
    expires_in_days: int,
    base_url: str,
) -> IssuedInvite:
    granted = await grantable_role(session, principal, role)
    bound_email = checked_email(email) if email else None
    if bound_email is not None:
        already = await session.scalar(
            scoped(select(Membership.id), Membership, principal)
            .join(Account, Account.id == Membership.account_id)
            .where(Account.email == bound_email)
        )
        if already is not None:
            raise AlreadyMember("This email belongs to a member of the organisation already.")
    invitation = Invitation(
        organisation_id=principal.organisation_id,
        role=granted.name,
        email=bound_email,
        created_by=principal.actor,
    )
    issued = _new_token(invitation, expires_in_days, base_url)
    session.add(invitation)
    await session.flush()
    details = _described(invitation)
    record(
        session,
        Actor.of(principal),
        "invite.created",
        organisation_id=principal.organisation_id,
        target_type="invite",
        target_id=invitation.id,
        after=details,
    )
    emit(session, EventType.USER_INVITED, details, organisation_id=principal.organisation_id)
    return issued


async def list_invitations(
    session: AsyncSession,
    principal: Principal,
    *,
    status: Status | None,
    role: str | None,
    email_starts_with: str | None,
    limit: int,
    cursor: str | None,
) -> Page[Invitation]:
    statement = scoped(select(Invitation), Invitation, principal)
    if status is not None:
        statement = statement.where(_status_condition(status, utcnow()))
    if role is not None:
        statement = statement.where(Invitation.role == role)
    if email_starts_with:
        dialect = session.get_bind().dialect.name
        statement = statement.where(email_prefix(Invitation.email, email_starts_with, dialect))
    return await keyset_page(session, statement, Invitation.id, limit=limit, cursor=cursor)


async def revoke_invitation(session: AsyncSession, principal: Principal, invite_id: uuid.UUID) -> None:
    """Revoke a not yet accepted invitation; revoking twice is not an error."""
    invitation = await get_scoped(session, Invitation, invite_id, principal, what="invitation")
    if invitation.revoked_at is not None and invitation.accepted_at is None:
        return
    # Conditional, like acceptance: of a revoke and an accept racing, exactly one takes effect.
    revoked = await session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation.id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None)
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if revoked.rowcount != 1:  # type: ignore[attr-defined]
        raise InviteNotPending()
    details = _described(invitation)
    record(
        session,
        Actor.of(principal),
        "invite.revoked",
        organisation_id=principal.organisation_id,
        target_type="invite",
        target_id=invitation.id,
        before={"status": "pending"},
        after={"status": "revoked"},
    )
    emit(session, EventType.INVITE_REVOKED, details, organisation_id=principal.organisation_id)


async def renew_invitation(
    session: AsyncSession, principal: Principal, invite_id: uuid.UUID, *, expires_in_days: int, base_url: str
) -> IssuedInvite:
    """A fresh token and expiry for an invitation not yet accepted or revoked; the old link stops.
    Renewing hands the role out again, so the no-escalation rule applies as on creation."""
    invitation = await get_scoped(
        session, Invitation, invite_id, principal, what="invitation", for_update=True
    )
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise InviteNotPending()
    await grantable_role(session, principal, invitation.role)
    before = invitation.expires_at
    issued = _new_token(invitation, expires_in_days, base_url)
    await session.flush()
    record(
        session,
        Actor.of(principal),
        "invite.renewed",
        organisation_id=principal.organisation_id,
        target_type="invite",
        target_id=invitation.id,
        before={"expiresAt": before.isoformat()},
        after={"expiresAt": invitation.expires_at.isoformat()},
    )
    return issued


@dataclass(frozen=True)
class UsableInvite:
    invitation: Invitation
    organisation: Organisation
    role: Role


async def _usable(session: AsyncSession, token: str) -> UsableInvite:
    row = (
        await session.execute(
            select(Invitation, Organisation)
            .join(Organisation, Organisation.id == Invitation.organisation_id)
            .where(Invitation.token_hash == digest(token), _pending(utcnow()))
        )
    ).one_or_none()
    if row is None:
        raise InvalidInvite()
    invitation, organisation = row
    role = await resolve_role(session, organisation.id, invitation.role)
    if role is None:  # its custom role was deleted (which also revokes it; this covers the race)
        raise InvalidInvite()
    return UsableInvite(invitation, organisation, role)


async def preview_invitation(session: AsyncSession, token: str) -> UsableInvite:
    return await _usable(session, token)


async def _signing_in(
    session: AsyncSession,
    throttle: LoginThrottle,
    *,
    email: str,
    password: str,
    client_address: str,
) -> tuple[Account | None, str | None]:
    """Who accepts with ``email`` and ``password``: (the existing account, None) when the password
    is its password, or (None, the new account's password hash) when no account has the email.

    Both answers, and the refusals, must not tell whether the email has an account: the failure
    budget is checked for any email as typed (as login does), and each branch costs one argon2 run
    (verifying the account's hash, or hashing the new account's password). A wrong password is a
    failed login: the same 401 ``invalid_credentials``, spent from the same per-account budget, and
    audited in the account's organisations.
    """
    wait = await throttle.failures_per_account.retry_after(email)
    if wait:
        raise RateLimited(wait)
    account = await find_account(session, email)
    if account is None:
        return None, await hash_password(password)
    if await verify_password(account.password_hash, password):
        return account, None
    await throttle.failures_per_account.take(email)
    # Audited as login audits a failure: in each organisation of the account (none: outside any).
    actor = Actor("anonymous", email, client_address)
    failure = {"reason": "invalid_credentials", "via": "invitation"}
    memberships = (
        await session.execute(
            select(Membership.id, Membership.organisation_id).where(Membership.account_id == account.id)
        )
    ).all()
    if not memberships:
        record(session, actor, "user.login_failed", organisation_id=None, after=failure)
    for membership_id, organisation_id in memberships:
        record(
            session,
            actor,
            "user.login_failed",
            organisation_id=organisation_id,
            target_type="user",
            target_id=membership_id,
            after=failure,
        )
    raise LoginFailed()


async def accept_invitation(
    session: AsyncSession,
    throttle: LoginThrottle,
    token: str,
    *,
    email: str | None,
    password: str | None,
    bintu_token: str | None,
    client_address: str,
    lifetime: timedelta,
) -> LoginResult:
    """Join the invitation's organisation with an email and a password (a new account, or signing in
    with the existing account of that email) or with the bintu token of an existing account.
    Returns a bintu token for the new membership, the same answer in every case."""
    usable = await _usable(session, token)
    invitation, organisation = usable.invitation, usable.organisation

    password_hash: str | None = None
    if bintu_token:
        if email is not None or password is not None:
            raise BadRequest(
                "Send either an email and password or your bintu token, not both.",
                code="ambiguous_credentials",
            )
        use = await principal_from_token(session, bintu_token)
        member = use.principal if use else None
        if member is None or member.account_id is None:
            raise Unauthenticated()
        account = await session.get(Account, member.account_id)
        if account is None:
            raise Unauthenticated()
        joining_email = account.email
        if invitation.email is not None and invitation.email != joining_email:
            raise InviteEmailMismatch()
    else:
        if not email or not password:
            raise BadRequest(
                "Give an email and a password (your account's, or one for a new account), or send "
                "your bintu token (X-BINTU-TOKEN) to join with the account you are signed in with.",
                code="credentials_required",
            )
        joining_email = checked_email(email)
        # Everything that refuses before the account lookup answers alike for every email.
        if invitation.email is not None and invitation.email != joining_email:
            raise InviteEmailMismatch()
        check_password(password)
        # Hashing (or verifying) before taking the organisation lock: it takes tens of milliseconds.
        account, password_hash = await _signing_in(
            session, throttle, email=joining_email, password=password, client_address=client_address
        )
    if account is not None:
        existing = await session.scalar(
            select(Membership.id).where(
                Membership.organisation_id == organisation.id, Membership.account_id == account.id
            )
        )
        if existing is not None:
            raise AlreadyMember()

    await lock_organisation(session, organisation.id)
    now = utcnow()
    consumed = await session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, _pending(now))
        .values(accepted_at=now)
        .execution_options(synchronize_session=False)
    )
    if consumed.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidInvite()  # another request accepted it (or it was revoked) meanwhile

    new_account = account is None
    try:
        if account is None:
            assert password_hash is not None
            account = await add_account(session, email=joining_email, password_hash=password_hash)
        membership = await add_membership(session, organisation, account, usable.role.name)
    except IntegrityError:
        if not new_account:
            raise AlreadyMember() from None  # a concurrent request joined the same account first
        # A concurrent request created an account with this email first; trying again signs in.
        raise Conflict("Another request used this email at the same moment; try again.") from None
    await session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id)
        .values(accepted_by_id=membership.id)
        .execution_options(synchronize_session=False)
    )
    issued = await issue_token(session, membership, lifetime)
    record(
        session,
        Actor(f"user:{membership.id}", account.email, client_address),
        "user.joined",
        organisation_id=organisation.id,
        target_type="user",
        target_id=membership.id,
        after={"email": account.email, "role": membership.role, "inviteId": str(invitation.id)},
    )
    emit(
        session,
        EventType.USER_JOINED,
        {
            "userId": str(membership.id),
            "email": account.email,
            "role": membership.role,
            "inviteId": str(invitation.id),
        },
        organisation_id=organisation.id,
    )
    return LoginResult(issued, membership, organisation, usable.role, account)
