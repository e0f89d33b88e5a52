"""What second factors an account has, as its owner and the users list see them (never a secret)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authn.mfa import recovery
from streamward.authn.mfa.models import Passkey, TotpFactor
from streamward.authz.principal import Principal
from streamward.errors import BadRequest
from streamward.orgs.models import organisation_of
from streamward.users.models import Account


@dataclass(frozen=True)
class FactorView:
    """One authenticator app or passkey as the account's owner sees it (never its secret)."""

    id: uuid.UUID
    name: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class MfaSummary:
    """What ``GET /api/user/mfa`` and the dashboard's security page show."""

    enrolled: bool  # a usable factor exists (a confirmed app or a passkey)
    required: bool  # the organisation signed in to requires one
    totp: list[FactorView]  # confirmed authenticator apps, oldest first
    passkeys: list[FactorView]  # oldest first
    recovery_codes_remaining: int


@dataclass(frozen=True)
class FactorKinds:
    """Which kinds of factor an account has (the users list's ``mfa`` flags)."""

    totp: bool
    passkey: bool


def view(factor: TotpFactor | Passkey) -> FactorView:
    return FactorView(factor.id, factor.name, factor.created_at, factor.last_used_at)


def account_id_of(principal: Principal) -> uuid.UUID:
    """The account whose factors a request is about: a member's (bintu token), never the API key's."""
    if principal.account_id is None:
        raise BadRequest(
            "Second factors belong to a user: use your bintu token, not the API key.", code="user_required"
        )
    return principal.account_id


async def summary(session: AsyncSession, principal: Principal) -> MfaSummary:
    """The caller's factors, and whether their organisation requires one."""
    account_id = account_id_of(principal)
    apps = (
        await session.execute(
            select(TotpFactor)
            .where(TotpFactor.account_id == account_id, TotpFactor.confirmed_at.is_not(None))
            .order_by(TotpFactor.created_at, TotpFactor.id)
        )
    ).scalars()
    keys = (
        await session.execute(
            select(Passkey).where(Passkey.account_id == account_id).order_by(Passkey.created_at, Passkey.id)
        )
    ).scalars()
    totp_views, passkey_views = [view(app) for app in apps], [view(key) for key in keys]
    return MfaSummary(
        enrolled=bool(totp_views or passkey_views),
        required=organisation_of(principal).mfa_required,
        totp=totp_views,
        passkeys=passkey_views,
        recovery_codes_remaining=await recovery.remaining(session, account_id),
    )


# The kinds of factor of the account in the enclosing statement's FROM (``Account``), as two
# labelled columns: ``totp`` (a confirmed authenticator app) and ``passkey``. The users list selects
# them beside each row, so a page costs one statement, whatever its accounts have.
FACTOR_KIND_COLUMNS = (
    exists().where(TotpFactor.account_id == Account.id, TotpFactor.confirmed_at.is_not(None)).label("totp"),
    exists().where(Passkey.account_id == Account.id).label("passkey"),
)
# Built once: composing the statement cost more CPU than running it (a page of the users list each).
_KINDS = select(Account.id, *FACTOR_KIND_COLUMNS).where(
    Account.id.in_(bindparam("account_ids", expanding=True))
)


async def kinds_of(session: AsyncSession, account_ids: list[uuid.UUID]) -> dict[uuid.UUID, FactorKinds]:
    """The kinds of factor of each account, in one query (a page of the users list at once)."""
    if not account_ids:
        return {}
    rows = await session.execute(_KINDS, {"account_ids": list(set(account_ids))})
    return {row.id: FactorKinds(totp=bool(row.totp), passkey=bool(row.passkey)) for row in rows}
