"""Provisioning: an organisation with its first nanoAdmin (the operator's CLI, the demo)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authz.permissions import ADMIN_ROLE
from streamward.crypto import SecretBox
from streamward.orgs.service import CreatedOrganisation, create_organisation
from streamward.users.models import Membership
from streamward.users.service import add_membership, create_account, find_account


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
    created = await create_organisation(session, box, **organisation)
    account = await find_account(session, admin_email)
    existed = account is not None
    if account is None:
        account = await create_account(session, email=admin_email, password=admin_password)
    admin = await add_membership(session, created.organisation, account, ADMIN_ROLE)
    return ProvisionedOrganisation(created, admin, existed)
