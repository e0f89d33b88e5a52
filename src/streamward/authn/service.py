"""Credentials: login, bintu tokens (sessions), the API key; from a credential to a Principal."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authn.models import BintuSession
from streamward.authn.passwords import hash_password, needs_rehash, verify_password
from streamward.authn.ratelimit import LoginThrottle
from streamward.authz.permissions import ALL_PERMISSIONS, Role
from streamward.authz.policy import permissions_of, resolve_role
from streamward.authz.principal import Principal
from streamward.crypto import digest, new_token
from streamward.db import Database, UTCDateTime, utcnow
from streamward.errors import AppError, InvalidCredentials, NotFound, RateLimited
from streamward.orgs.models import Organisation
from streamward.users.models import Account, Membership, normalise_email

log = logging.getLogger(__name__)

SESSION_TOKEN_PREFIX = "swt"
API_KEY_PREFIX = "swk"
# last_used_at is bookkeeping, not security: refresh it at most this often per session.
LAST_USED_RESOLUTION = timedelta(minutes=5)


class OrganisationChoiceRequired(AppError):
    status_code = 409
    code = "organisation_required"
    message = "This account belongs to several organisations; say which one."


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
    email = normalise_email(email)
    wait = throttle.per_address.take(client_address) or throttle.failures_per_account.retry_after(email)
    if wait:
        raise RateLimited(wait)

    account = (await session.execute(select(Account).where(Account.email == email))).scalar_one_or_none()
    # Unknown email and wrong password: same work, same answer.
    if not await verify_password(account.password_hash if account else None, password) or account is None:
        throttle.failures_per_account.take(email)
        raise InvalidCredentials()

    rows = (
        await session.execute(
            select(Membership, Organisation)
            .join(Organisation, Organisation.id == Membership.organisation_id)
            .where(Membership.account_id == account.id)
            .order_by(Organisation.name, Organisation.id)
        )
    ).all()
    if not rows:
        raise InvalidCredentials()
    if organisation_id is not None:
        rows = [row for row in rows if row[1].id == organisation_id]
        if not rows:
            raise NotFound("You are not a member of that organisation.", code="organisation_not_found")
    elif len(rows) > 1:
        raise OrganisationChoiceRequired(
            details={"organisations": [{"id": str(org.id), "name": org.name} for _, org in rows]}
        )
    membership, organisation = rows[0]

    if needs_rehash(account.password_hash):
        account.password_hash = await hash_password(password)
    issued = await issue_token(session, membership, lifetime)
    role = await resolve_role(session, organisation.id, membership.role)
    return LoginResult(issued, membership, organisation, role, account)


async def logout(session: AsyncSession, principal: Principal) -> None:
    if principal.session_id is not None:
        await session.execute(delete(BintuSession).where(BintuSession.id == principal.session_id))


# Built once: composing a Select costs more CPU than running it on SQLite.
_TOKEN_LOOKUP = (
    select(BintuSession.id, BintuSession.last_used_at, Membership, Organisation, Account.email)
    .join(
        Membership,
        (Membership.id == BintuSession.membership_id) & (Membership.token_key == BintuSession.token_key),
    )
    .join(Organisation, Organisation.id == Membership.organisation_id)
    .join(Account, Account.id == Membership.account_id)
    .where(
        BintuSession.token_hash == bindparam("token_hash"),
        BintuSession.expires_at > bindparam("now", type_=UTCDateTime()),
    )
)


async def principal_from_token(session: AsyncSession, database: Database, token: str) -> Principal | None:
    """The hot path of every member request: one query joins token, membership and organisation.

    A token counts only while it was issued under the membership's current token key, so renewing
    the key (one UPDATE) ends every token of that user at once.
    """
    now = utcnow()
    row = (await session.execute(_TOKEN_LOOKUP, {"token_hash": digest(token), "now": now})).one_or_none()
    if row is None:
        return None
    session_id, last_used_at, membership, organisation, email = row
    if now - last_used_at > LAST_USED_RESOLUTION:
        await _touch(database, session_id, now)
    return Principal(
        organisation=organisation,
        permissions=await permissions_of(session, organisation.id, membership.role),
        method="session",
        membership_id=membership.id,
        account_id=membership.account_id,
        email=email,
        role=membership.role,
        session_id=session_id,
    )


async def _touch(database: Database, session_id: uuid.UUID, now: datetime) -> None:
    # Its own short write transaction: a read-only request must not turn into a writer for this.
    try:
        async with database.session(write=True) as writer:
            await writer.execute(
                update(BintuSession).where(BintuSession.id == session_id).values(last_used_at=now)
            )
            await writer.commit()
    except Exception:  # bookkeeping only; never fail the request for it
        log.warning("could not record session use", exc_info=True)


_API_KEY_LOOKUP = select(Organisation).where(Organisation.api_key_hash == bindparam("api_key_hash"))


async def principal_from_api_key(session: AsyncSession, api_key: str) -> Principal | None:
    organisation = (
        await session.execute(_API_KEY_LOOKUP, {"api_key_hash": digest(api_key)})
    ).scalar_one_or_none()
    if organisation is None:
        return None
    return Principal(organisation=organisation, permissions=ALL_PERMISSIONS, method="api_key")
