"""From a credential to a Principal: a bintu token (a member's session) or the organisation's API key.

These look-ups run on every authenticated request; ``web.authenticate.principal_for`` is the one
place that calls them, for every surface.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authn.models import BintuSession
from streamward.authz.permissions import ALL_PERMISSIONS, PREDEFINED_ROLES
from streamward.authz.principal import Principal
from streamward.crypto import digest
from streamward.db import UTCDateTime, utcnow
from streamward.orgs.models import Organisation
from streamward.roles.lookup import custom_role
from streamward.roles.models import CustomRole
from streamward.users.models import Account, Membership

# last_used_at is bookkeeping, not security: refresh it at most this often per session.
LAST_USED_RESOLUTION = timedelta(minutes=5)

# Built once: composing a Select costs more CPU than running it on SQLite.
# The custom role is joined in (predefined roles live in code and match no row), so a member's
# request costs one round trip whatever their role.
_TOKEN_LOOKUP = (
    select(
        BintuSession.id,
        BintuSession.last_used_at,
        Membership,
        Organisation,
        Account.email,
        CustomRole.description,
        CustomRole.permissions,
    )
    .join(
        Membership,
        (Membership.id == BintuSession.membership_id) & (Membership.token_key == BintuSession.token_key),
    )
    .join(Organisation, Organisation.id == Membership.organisation_id)
    .join(Account, Account.id == Membership.account_id)
    .outerjoin(
        CustomRole,
        (CustomRole.organisation_id == Membership.organisation_id) & (CustomRole.name == Membership.role),
    )
    .where(
        BintuSession.token_hash == bindparam("token_hash"),
        BintuSession.expires_at > bindparam("now", type_=UTCDateTime()),
    )
)


@dataclass(frozen=True)
class SessionUse:
    """A valid token's Principal, and whether the session's last use is old enough to record."""

    principal: Principal
    stale_since: datetime | None  # the time to record as last use, when it is due


async def principal_from_token(session: AsyncSession, token: str) -> SessionUse | None:
    """The hot path of every member request: one query joins token, membership, organisation,
    account and custom role.

    A token counts only while it was issued under the membership's current token key, so renewing
    the key (one UPDATE) ends every token of that user at once.
    """
    now = utcnow()
    row = (await session.execute(_TOKEN_LOOKUP, {"token_hash": digest(token), "now": now})).one_or_none()
    if row is None:
        return None
    session_id, last_used_at, membership, organisation, email, description, permissions = row
    predefined = PREDEFINED_ROLES.get(membership.role)
    if predefined is not None:
        granted = predefined.permissions
    elif permissions is not None:
        granted = custom_role(membership.role, description, permissions).permissions
    else:  # a role name that no longer resolves grants nothing
        granted = frozenset()
    principal = Principal(
        organisation=organisation,
        permissions=granted,
        method="session",
        membership_id=membership.id,
        account_id=membership.account_id,
        email=email,
        role=membership.role,
        session_id=session_id,
    )
    return SessionUse(principal, now if now - last_used_at > LAST_USED_RESOLUTION else None)


async def record_use(session: AsyncSession, session_id: uuid.UUID, when: datetime) -> None:
    """Note a session's last use (flushes; the caller's transaction commits it)."""
    await session.execute(update(BintuSession).where(BintuSession.id == session_id).values(last_used_at=when))


_API_KEY_LOOKUP = select(Organisation).where(Organisation.api_key_hash == bindparam("api_key_hash"))


async def principal_from_api_key(session: AsyncSession, api_key: str) -> Principal | None:
    organisation = (
        await session.execute(_API_KEY_LOOKUP, {"api_key_hash": digest(api_key)})
    ).scalar_one_or_none()
    if organisation is None:
        return None
    return Principal(organisation=organisation, permissions=ALL_PERMISSIONS, method="api_key")
