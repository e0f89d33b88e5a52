"""Accepting an invitation by its token (public): look it up, then join its organisation.

Acceptance is decided by one conditional UPDATE (still pending?) whose row count says who won, so an
invitation is used at most once however many requests race for it. Everything the joining writes
after that UPDATE is undone with it when the joining is refused (see ``_join``).

Accepting with an email and a password never says whether that email has an account: a new email
gets an account, an existing account's email is a sign-in with that account (its password joins,
a wrong one is a failed login, counted like one). See ``_signing_in``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record_change
from streamward.authn.account_audit import memberships_of, record_for_account
from streamward.authn.principals import principal_from_token
from streamward.authn.service import LoginFailed, LoginResult, account_still_signed_in, issue_token
from streamward.authz.permissions import Role
from streamward.crypto import digest
from streamward.db import utcnow
from streamward.errors import AppError, BadRequest, Conflict, RateLimited, Unauthenticated
from streamward.events.catalogue import EventType
from streamward.invites.models import Invitation
from streamward.invites.service import AlreadyMember, pending
from streamward.limits import LoginThrottle
from streamward.orgs.models import Organisation
from streamward.orgs.service import lock_organisation
from streamward.password_policy import check_password
from streamward.passwords import hash_password, verify_password
from streamward.roles.lookup import resolve_role
from streamward.users.models import Account, Membership
from streamward.users.service import account_for_sign_in, add_account, add_membership, checked_email


class InvalidInvite(AppError):
    """One answer for unknown, expired, revoked and used invitations: which one it is stays private."""

    status_code = 404
    code = "invite_invalid"
    message = "This invitation link is not valid: unknown, expired, revoked or already used."


class InviteEmailMismatch(AppError):
    status_code = 403
    code = "invite_email_mismatch"
    message = "This invitation is for another email address."


class SignInFirst(AppError):
    """The account has a second factor: a password alone must not make a session of it (that
    would be a way around the second factor). Only someone who typed the right password sees this."""

    status_code = 403
    code = "mfa_sign_in_required"
    message = (
        "This account has a second factor: sign in first, then accept the invitation with your bintu token."
    )


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
            .where(Invitation.token_hash == digest(token), pending(utcnow()))
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


@dataclass(frozen=True)
class _Joining:
    """Who joins: an existing account, or the email and password hash of the account to create."""

    email: str
    account: Account | None
    password_hash: str | None = None


async def _signing_in(
    session: AsyncSession,
    throttle: LoginThrottle,
    *,
    email: str,
    password: str,
    client_address: str,
) -> _Joining:
    """Who accepts with ``email`` and ``password``: the existing account when the password is its
    password, or a new account's password hash when no account has the email.

    Both answers, and the refusals, must not tell whether the email has an account: the failure
    budget is checked for any email as typed (as login does), and each branch costs one argon2 run
    (verifying the account's hash, or hashing the new account's password). A wrong password is a
    failed login: the same 401 ``invalid_credentials``, spent from the same per-account budget, and
    audited in the account's organisations.
    """
    wait = await throttle.failures_per_account.retry_after(email)
    if wait:
        raise RateLimited(wait)
    account = await account_for_sign_in(session, email)
    if account is None:
        return _Joining(email, None, await hash_password(password))
    if await verify_password(account.password_hash, password):
        if account.mfa_enrolled:
            raise SignInFirst()
        return _Joining(email, account)
    await throttle.failures_per_account.take(email)
    record_for_account(
        session,
        Actor("anonymous", email, client_address),
        "user.login_failed",
        await memberships_of(session, account.id),
        after={"reason": "invalid_credentials", "via": "invitation"},
    )
    raise LoginFailed()


async def _signed_in(session: AsyncSession, invitation: Invitation, bintu_token: str) -> _Joining:
    """Joining with the account whose bintu token this is."""
    use = await principal_from_token(session, bintu_token)
    member = use.principal if use else None
    if member is None or member.account_id is None:
        raise Unauthenticated()
    account = await account_still_signed_in(session, member.account_id, member.session_id)
    if invitation.email is not None and invitation.email != account.email:
        raise InviteEmailMismatch()
    return _Joining(account.email, account)


async def _with_password(
    session: AsyncSession,
    throttle: LoginThrottle,
    invitation: Invitation,
    *,
    email: str | None,
    password: str | None,
    client_address: str,
) -> _Joining:
    """Joining with an email and a password: that email's account, or a new one."""
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
    return await _signing_in(
        session, throttle, email=joining_email, password=password, client_address=client_address
    )


async def _join(session: AsyncSession, usable: UsableInvite, joining: _Joining) -> tuple[Account, Membership]:
    """Use the invitation up and make the membership (and the account, for a new one).

    Done in a savepoint: a refusal after the invitation's UPDATE (a concurrent request joined the
    same account, or created the email's account, first) undoes that UPDATE and the inserts at
    once, and leaves the session usable for whatever the surface shows next.
    """
    invitation, organisation = usable.invitation, usable.organisation
    account = joining.account
    try:
        async with session.begin_nested():
            now = utcnow()
            consumed = await session.execute(
                update(Invitation)
                .where(Invitation.id == invitation.id, pending(now))
                .values(accepted_at=now)
                .execution_options(synchronize_session=False)
            )
            if consumed.rowcount != 1:  # type: ignore[attr-defined]
                raise InvalidInvite()  # another request accepted it (or it was revoked) meanwhile
            if account is None:
                assert joining.password_hash is not None
                account = await add_account(session, email=joining.email, password_hash=joining.password_hash)
            membership = await add_membership(session, organisation, account, usable.role.name)
            await session.execute(
                update(Invitation)
                .where(Invitation.id == invitation.id)
                .values(accepted_by_id=membership.id)
                .execution_options(synchronize_session=False)
            )
    except IntegrityError:
        if joining.account is not None:
            raise AlreadyMember() from None  # a concurrent request joined the same account first
        # A concurrent request created an account with this email first; trying again signs in.
        raise Conflict("Another request used this email at the same moment; try again.") from None
    return account, membership


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
    if bintu_token:
        if email is not None or password is not None:
            raise BadRequest(
                "Send either an email and password or your bintu token, not both.",
                code="ambiguous_credentials",
            )
        joining = await _signed_in(session, invitation, bintu_token)
    else:
        joining = await _with_password(
            session, throttle, invitation, email=email, password=password, client_address=client_address
        )
    if joining.account is not None:
        existing = await session.scalar(
            select(Membership.id).where(
                Membership.organisation_id == organisation.id, Membership.account_id == joining.account.id
            )
        )
        if existing is not None:
            raise AlreadyMember()

    await lock_organisation(session, organisation.id)
    account, membership = await _join(session, usable, joining)
    issued = await issue_token(session, membership, lifetime)
    joined = {"email": account.email, "role": membership.role, "inviteId": str(invitation.id)}
    record_change(
        session,
        Actor(f"user:{membership.id}", account.email, client_address),
        "user.joined",
        organisation_id=organisation.id,
        target_type="user",
        target_id=membership.id,
        event=EventType.USER_JOINED,
        payload=EventType.USER_JOINED.payload(userId=str(membership.id), **joined),
        after=joined,
    )
    return LoginResult(issued, membership, organisation, usable.role, account)
