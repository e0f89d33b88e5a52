"""Audit entries about an account rather than one membership: a login attempt, a password event
or a wrong password typed while joining concerns every organisation the account belongs to."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.users.models import Membership

# (membership id, organisation id) of each membership of one account.
Memberships = list[tuple[uuid.UUID, uuid.UUID]]


async def memberships_of(session: AsyncSession, account_id: uuid.UUID) -> Memberships:
    """(membership id, organisation id) of every membership of an account."""
    statement = select(Membership.id, Membership.organisation_id).where(Membership.account_id == account_id)
    return [(row.id, row.organisation_id) for row in await session.execute(statement)]


def record_for_account(
    session: AsyncSession,
    actor: Actor,
    action: str,
    memberships: Memberships,
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
