"""Policy functions: what a role name means inside one organisation."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authz.permissions import PREDEFINED_ROLES, Role


async def resolve_role(session: AsyncSession, organisation_id: uuid.UUID, name: str) -> Role | None:
    """The role called ``name`` in this organisation: a predefined one, or None when unknown.

    Resolved on every request rather than cached in the token, so that a role change or a
    custom-role edit takes effect on the very next request, in every process.
    """
    return PREDEFINED_ROLES.get(name)


async def permissions_of(session: AsyncSession, organisation_id: uuid.UUID, name: str) -> frozenset[str]:
    role = await resolve_role(session, organisation_id, name)
    return role.permissions if role else frozenset()
