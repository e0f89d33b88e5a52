"""Invitations: create, list, revoke, renew (the organisation's side). Looking one up and
accepting it by its token, without credentials, is ``invites.acceptance``.

An invitation token has 256 random bits and is stored only as its SHA-256: the link is shown once,
when the invitation is created or renewed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record, record_change
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped, scoped
from streamward.crypto import digest, new_token
from streamward.db import utcnow
from streamward.errors import AppError
from streamward.events.catalogue import EventType
from streamward.invites.models import Invitation
from streamward.pagination import Page, keyset_page
from streamward.roles.lookup import grantable_role
from streamward.users.models import Account, Membership
from streamward.users.service import checked_email, email_prefix

INVITE_TOKEN_PREFIX = "swi"

Status = Literal["pending", "accepted", "expired", "revoked"]


# How long an invitation link works, in days. The API's request models take their bounds from here.
MIN_LIFETIME_DAYS = 1
MAX_LIFETIME_DAYS = 30
DEFAULT_LIFETIME_DAYS = 7


class InvalidInviteLifetime(AppError):
    # As the API's request models refuse a lifetime out of range: 422 ``validation_error``.
    status_code = 422
    code = "validation_error"
    message = f"Choose a validity of {MIN_LIFETIME_DAYS} to {MAX_LIFETIME_DAYS} days."


def invitation_lifetime(expires_in_days: int) -> timedelta:
    """How long a new (or renewed) invitation link works; the one check of its range."""
    if not MIN_LIFETIME_DAYS <= expires_in_days <= MAX_LIFETIME_DAYS:
        raise InvalidInviteLifetime(
            details={
                "field": "expiresInDays",
                "problem": f"must be {MIN_LIFETIME_DAYS} to {MAX_LIFETIME_DAYS}",
            }
        )
    return timedelta(days=expires_in_days)


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


def pending(now: datetime) -> ColumnElement[bool]:
    """The SQL form of ``status_of(...) == "pending"``: neither accepted nor revoked, nor expired."""
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
    return pending(now)


@dataclass(frozen=True)
class IssuedInvite:
    invitation: Invitation
    token: str
    url: str


def _new_token(invitation: Invitation, lifetime: timedelta, base_url: str) -> IssuedInvite:
    token = new_token(INVITE_TOKEN_PREFIX)
    invitation.token_hash = digest(token)
    invitation.expires_at = utcnow() + lifetime
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
    lifetime = invitation_lifetime(expires_in_days)
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
    issued = _new_token(invitation, lifetime, base_url)
    session.add(invitation)
    await session.flush()
    details = _described(invitation)
    record_change(
        session,
        principal,
        "invite.created",
        organisation_id=principal.organisation_id,
        target_type="invite",
        target_id=invitation.id,
        event=EventType.USER_INVITED,
        payload=EventType.USER_INVITED.payload(**details),
        after=details,
    )
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
    record_change(
        session,
        principal,
        "invite.revoked",
        organisation_id=principal.organisation_id,
        target_type="invite",
        target_id=invitation.id,
        event=EventType.INVITE_REVOKED,
        payload=EventType.INVITE_REVOKED.payload(**_described(invitation)),
        before={"status": "pending"},
        after={"status": "revoked"},
    )


async def revoke_for_role(session: AsyncSession, principal: Principal, role: str) -> int:
    """Revoke every invitation for ``role`` not yet accepted or revoked (its custom role is being
    deleted: nobody could join with it any more); returns how many. One UPDATE, no entry of its own
    per invitation: the role's deletion records the count."""
    revoked = await session.execute(
        scoped(update(Invitation), Invitation, principal)
        .where(Invitation.role == role, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(revoked.rowcount)  # type: ignore[attr-defined]


async def renew_invitation(
    session: AsyncSession, principal: Principal, invite_id: uuid.UUID, *, expires_in_days: int, base_url: str
) -> IssuedInvite:
    """A fresh token and expiry for an invitation not yet accepted or revoked; the old link stops.
    Renewing hands the role out again, so the no-escalation rule applies as on creation."""
    lifetime = invitation_lifetime(expires_in_days)
    invitation = await get_scoped(
        session, Invitation, invite_id, principal, what="invitation", for_update=True
    )
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise InviteNotPending()
    await grantable_role(session, principal, invitation.role)
    before = invitation.expires_at
    issued = _new_token(invitation, lifetime, base_url)
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
