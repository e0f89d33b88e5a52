"""Credentials: login, bintu tokens (sessions, named tokens), logout. Passwords (change, reset) are
``authn.passwords``; from a credential to a Principal is ``authn.principals``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authn.account_audit import Memberships, memberships_of, record_for_account
from streamward.authn.models import BintuSession

# Moved to authn.passwords; still importable from here for housekeeping and the tests that import
# them from authn.service.
from streamward.authz.permissions import Role
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped
from streamward.crypto import digest, new_token
from streamward.db import utcnow
from streamward.errors import AppError, BadRequest, InvalidCredentials, NotFound, RateLimited
from streamward.limits import LoginThrottle
from streamward.orgs.models import Organisation
from streamward.passwords import hash_password, needs_rehash, verify_password
from streamward.request_context import note_login, note_rate_limit
from streamward.roles.lookup import resolve_role
from streamward.users.models import Account, Membership, normalise_email
from streamward.users.service import find_account

SESSION_TOKEN_PREFIX = "swt"


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
    stored = BintuSession(
        token_hash=digest(token),
        membership_id=membership.id,
        token_key=membership.token_key,
        name=name,
        created_at=now,
        expires_at=now + lifetime,
        last_used_at=now,
    )
    session.add(stored)
    await session.flush()
    return IssuedToken(token=token, session=stored)


@dataclass(frozen=True)
class _Attempt:
    """One login attempt, as its audit entries name it and as failures are counted."""

    session: AsyncSession
    email: str
    client_address: str

    @property
    def anonymous(self) -> Actor:
        return Actor("anonymous", self.email, self.client_address)

    def failed(self, reason: str, memberships: Memberships, refusal: AppError) -> AppError:
        """``refusal``, once the failure is audited (in each organisation of the account) and counted."""
        record_for_account(
            self.session, self.anonymous, "user.login_failed", memberships, after={"reason": reason}
        )
        note_login(reason)
        return refusal


async def _refuse_when_throttled(throttle: LoginThrottle, attempt: _Attempt) -> None:
    """Too many attempts from this address or failures for this email: refused before the account
    is looked up, audited once per refusal streak (outside any organisation)."""
    wait = await throttle.per_address.take(attempt.client_address)
    wait = wait or await throttle.failures_per_account.retry_after(attempt.email)
    if not wait:
        return
    if await throttle.first_refusal(f"{attempt.client_address}|{attempt.email}", wait):
        record(
            attempt.session,
            attempt.anonymous,
            "user.login_failed",
            organisation_id=None,
            after={"reason": "rate_limited"},
        )
    note_login("rate_limited")
    note_rate_limit("login")
    raise LoginRateLimited(wait)


async def _verified_account(throttle: LoginThrottle, attempt: _Attempt, password: str) -> Account:
    """The account of the email, provided the password is its password."""
    account = await find_account(attempt.session, attempt.email)
    # Unknown email and wrong password: same work, same answer.
    if not await verify_password(account.password_hash if account else None, password) or account is None:
        await throttle.failures_per_account.take(attempt.email)
        memberships = await memberships_of(attempt.session, account.id) if account else []
        raise attempt.failed("invalid_credentials", memberships, LoginFailed())
    return account


async def _chosen_membership(
    attempt: _Attempt, account: Account, organisation_id: uuid.UUID | None
) -> tuple[Membership, Organisation]:
    """The membership logged into: the one in ``organisation_id``, or the account's only one."""
    rows = (
        await attempt.session.execute(
            select(Membership, Organisation)
            .join(Organisation, Organisation.id == Membership.organisation_id)
            .where(Membership.account_id == account.id)
            .order_by(Organisation.name, Organisation.id)
        )
    ).all()
    memberships = [(membership.id, organisation.id) for membership, organisation in rows]
    if not rows:
        raise attempt.failed("no_membership", [], LoginFailed())
    if organisation_id is not None:
        rows = [row for row in rows if row[1].id == organisation_id]
        if not rows:
            raise attempt.failed("organisation_not_found", memberships, NotAMember())
    elif len(rows) > 1:
        choices = [{"id": str(org.id), "name": org.name} for _, org in rows]
        refusal = OrganisationChoiceRequired(details={"organisations": choices})
        raise attempt.failed("organisation_required", memberships, refusal)
    membership, organisation = rows[0]
    return membership, organisation


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
    attempt = _Attempt(session, normalise_email(email), client_address)
    await _refuse_when_throttled(throttle, attempt)
    account = await _verified_account(throttle, attempt, password)
    membership, organisation = await _chosen_membership(attempt, account, organisation_id)
    if needs_rehash(account.password_hash):
        account.password_hash = await hash_password(password)
    issued = await issue_token(session, membership, lifetime)
    role = await resolve_role(session, organisation.id, membership.role)
    record(
        session,
        Actor(f"user:{membership.id}", attempt.email, client_address),
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
