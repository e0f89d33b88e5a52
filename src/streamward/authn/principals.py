"""From a credential to a Principal: a bintu token (a member's session) or the organisation's API key.

These look-ups run on every authenticated request; ``web.authenticate.principal_for`` is the one
place that calls them, for every surface.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authn.models import BintuSession
from streamward.authz.permissions import ALL_PERMISSIONS, PREDEFINED_ROLES
from streamward.authz.principal import Principal
from streamward.crypto import digest
from streamward.db import LookupSource, UTCDateTime, detached, lookup_reader, utcnow
from streamward.lookup_pool import BatchedLookup, LookupPool
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
        Account.mfa_enrolled,
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


def limited_to_enrolment(organisation: Organisation, mfa_enrolled: bool) -> bool:
    """The organisation policy's rule: a member of an organisation that requires a second factor,
    whose account has none, may only set one up (and log out). Applied to every request's
    credential, so turning the policy on, or enrolling, changes the very next request."""
    return organisation.mfa_required and not mfa_enrolled


@dataclass(frozen=True)
class SessionUse:
    """A valid token's Principal, and whether the session's last use is old enough to record."""

    principal: Principal
    stale_since: datetime | None  # the time to record as last use, when it is due


async def principal_from_token(
    session: LookupSource, token: str, *, client_address: str | None = None
) -> SessionUse | None:
    """The hot path of every member request: one query joins token, membership, organisation,
    account and custom role.

    A token counts only while it was issued under the membership's current token key, so renewing
    the key (one UPDATE) ends every token of that user at once. Nothing is cached: every request
    reads the committed rows, so a reset, a role change or a deletion applies to the very next one.
    """
    now = utcnow()
    token_hash = digest(token)
    reader = await lookup_reader(session)
    if reader is not None:
        found = await _raw_token_lookup(reader, token_hash)
    else:
        assert isinstance(session, AsyncSession)  # only a session has no look-up pool
        row = (await session.execute(_TOKEN_LOOKUP, {"token_hash": token_hash, "now": now})).one_or_none()
        found = None
        if row is not None:
            session_id, last_used_at, membership, organisation, email, enrolled, description, permissions = (
                row
            )
            found = _Found(
                session_id,
                last_used_at,
                membership.id,
                membership.account_id,
                membership.role,
                email,
                enrolled,
                description,
                permissions,
                organisation,
            )
    if found is None:
        return None
    principal = Principal(
        organisation=found.organisation,
        permissions=_permissions(found.role, found.role_description, found.role_permissions),
        method="session",
        membership_id=found.membership_id,
        account_id=found.account_id,
        email=found.email,
        role=found.role,
        session_id=found.session_id,
        enrolment_only=limited_to_enrolment(found.organisation, found.mfa_enrolled),
        client_address=client_address,
    )
    return SessionUse(principal, now if now - found.last_used_at > LAST_USED_RESOLUTION else None)


def _permissions(role: str, description: str | None, permissions: list[str] | None) -> frozenset[str]:
    predefined = PREDEFINED_ROLES.get(role)
    if predefined is not None:
        return predefined.permissions
    if permissions is not None:
        return custom_role(role, description or "", permissions).permissions
    return frozenset()  # a role name that no longer resolves grants nothing


@dataclass(frozen=True, slots=True)
class _Found:
    session_id: uuid.UUID
    last_used_at: datetime
    membership_id: uuid.UUID
    account_id: uuid.UUID
    role: str
    email: str
    mfa_enrolled: bool
    role_description: str | None
    role_permissions: list[str] | None
    organisation: Organisation


# The same look-up as _TOKEN_LOOKUP, as one prepared statement on the database's asyncpg look-up pool
# (db.direct_reader). Building ORM rows cost more CPU than the query itself: the organisation is built
# directly from the row, as a detached instance with its columns loaded.
_ORG_COLUMNS = tuple(column.key for column in Organisation.__table__.columns)
_ORG_JSON = frozenset(
    column.key for column in Organisation.__table__.columns if isinstance(column.type, JSON)
)
# Built from the models' own table and column names only; the values are bound. Shared by the
# requests that ask while another look-up is under way (lookup_pool): the token's digest is the key,
# and the expiry is compared with the time the statement is sent, never earlier than the request.
_RAW_TOKEN_LOOKUP = BatchedLookup(
    [("token_hash", "text")],
    "SELECT s.id, s.last_used_at, m.id, m.account_id, m.role, a.email, a.mfa_enrolled, "  # noqa: S608
    + "r.description, r.permissions, "
    + ", ".join(f"o.{name}" for name in _ORG_COLUMNS)
    + f" FROM {BintuSession.__tablename__} s"
    + f" JOIN {Membership.__tablename__} m ON m.id = s.membership_id AND m.token_key = s.token_key"
    + f" JOIN {Organisation.__tablename__} o ON o.id = m.organisation_id"
    + f" JOIN {Account.__tablename__} a ON a.id = m.account_id"
    + f" LEFT JOIN {CustomRole.__tablename__} r"
    + " ON r.organisation_id = m.organisation_id AND r.name = m.role"
    + " WHERE s.token_hash = w.token_hash AND s.expires_at > $2",
    extra=lambda: (utcnow(),),
)


def _detached_organisation(values: list[Any]) -> Organisation:
    return detached(
        Organisation,
        {
            name: _json(value) if name in _ORG_JSON else value
            for name, value in zip(_ORG_COLUMNS, values, strict=True)
        },
    )


def _json(value: Any) -> Any:
    # SQLAlchemy's asyncpg dialect installs a JSON codec on its connections; without it, text.
    return json.loads(value) if isinstance(value, str) else value


async def _raw_token_lookup(reader: LookupPool, token_hash: str) -> _Found | None:
    row = await reader.one(_RAW_TOKEN_LOOKUP, (token_hash,))
    if row is None:
        return None
    values = list(row.values())[1:]  # after the key's position
    organisation = _detached_organisation(values[9:])
    permissions = _json(values[8])
    session_id, last_used_at, membership_id, account_id, role, email, enrolled, description = values[:8]
    return _Found(
        session_id,
        last_used_at,
        membership_id,
        account_id,
        role,
        email,
        enrolled,
        description,
        permissions,
        organisation,
    )


async def record_use(session: AsyncSession, session_id: uuid.UUID, when: datetime) -> None:
    """Note a session's last use (flushes; the caller's transaction commits it)."""
    await session.execute(update(BintuSession).where(BintuSession.id == session_id).values(last_used_at=when))


_API_KEY_LOOKUP = select(Organisation).where(Organisation.api_key_hash == bindparam("api_key_hash"))


_RAW_API_KEY_LOOKUP = BatchedLookup(
    [("api_key_hash", "text")],
    f"SELECT {', '.join(_ORG_COLUMNS)} FROM {Organisation.__tablename__}"  # noqa: S608
    " WHERE api_key_hash = w.api_key_hash",
)


async def principal_from_api_key(
    session: LookupSource, api_key: str, *, client_address: str | None = None
) -> Principal | None:
    """The organisation's master key: every permission. Looked up by its SHA-256 (an index probe)."""
    organisation: Organisation | None
    reader = await lookup_reader(session)
    if reader is not None:
        row = await reader.one(_RAW_API_KEY_LOOKUP, (digest(api_key),))
        organisation = _detached_organisation(list(row.values())[1:]) if row is not None else None
    else:
        assert isinstance(session, AsyncSession)
        organisation = (
            await session.execute(_API_KEY_LOOKUP, {"api_key_hash": digest(api_key)})
        ).scalar_one_or_none()
    if organisation is None:
        return None
    return Principal(
        organisation=organisation,
        permissions=ALL_PERMISSIONS,
        method="api_key",
        client_address=client_address,
    )
