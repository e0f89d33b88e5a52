"""Organisations: creation (with their keys) and what members may read of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authz.permissions import ADMIN_ROLE
from streamward.crypto import SecretBox, digest, new_token
from streamward.orgs import packages as package_catalogue
from streamward.orgs.models import ANALYTICS_LEVELS, SUPPORT_LEVELS, Organisation
from streamward.users.models import Membership

API_KEY_PREFIX = "swk"
PLAYER_KEY_PREFIX = "swp"
API_KEY_PURPOSE = "organisation.api_key"


@dataclass(frozen=True)
class CreatedOrganisation:
    organisation: Organisation
    api_key: str  # shown once to whoever created the organisation


def _check_level(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; one of: {', '.join(allowed)}")
    return value


async def create_organisation(
    session: AsyncSession,
    box: SecretBox,
    *,
    name: str,
    support_level: str = "basic",
    analytics_level: str = "basic",
    packages: list[str] | None = None,
    trial: bool = False,
) -> CreatedOrganisation:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValueError("organisation name must be 1 to 200 characters")
    api_key = new_token(API_KEY_PREFIX)
    organisation = Organisation(
        name=name,
        support_level=_check_level(support_level, SUPPORT_LEVELS, "support level"),
        analytics_level=_check_level(analytics_level, ANALYTICS_LEVELS, "analytics level"),
        trial=trial,
        packages=package_catalogue.normalise(packages or []),
        webhook_events=[],
        vod_public=False,
        api_key_hash=digest(api_key),
        api_key_sealed=box.seal(api_key, purpose=API_KEY_PURPOSE),
        player_key=new_token(PLAYER_KEY_PREFIX)[:64],
    )
    session.add(organisation)
    await session.flush()
    return CreatedOrganisation(organisation, api_key)


def reveal_api_key(box: SecretBox, organisation: Organisation) -> str:
    return box.open(organisation.api_key_sealed, purpose=API_KEY_PURPOSE)


@dataclass(frozen=True)
class ProvisionedOrganisation:
    created: CreatedOrganisation
    admin: Membership
    admin_account_existed: bool


async def create_with_admin(
    session: AsyncSession,
    box: SecretBox,
    *,
    admin_email: str,
    admin_password: str,
    **organisation: Any,
) -> ProvisionedOrganisation:
    """An organisation and its first nanoAdmin. An existing account joins with its own password."""
    from streamward.users.service import add_membership, create_account, find_account

    created = await create_organisation(session, box, **organisation)
    account = await find_account(session, admin_email)
    existed = account is not None
    if account is None:
        account = await create_account(session, email=admin_email, password=admin_password)
    admin = await add_membership(session, created.organisation, account, ADMIN_ROLE)
    return ProvisionedOrganisation(created, admin, existed)
