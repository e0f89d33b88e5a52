"""What a role name means inside one organisation: a predefined role, or one of its custom roles.

Resolved on every request rather than cached in a token, so that a role change or a custom-role
edit takes effect on the very next request, in every process.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authz.grants import Escalation, ensure_can_grant
from streamward.authz.permissions import ALL_PERMISSIONS, PREDEFINED_ROLES, Role
from streamward.authz.principal import Principal
from streamward.authz.scoping import scoped
from streamward.errors import AppError
from streamward.roles.models import CustomRole


class UnknownRole(AppError):
    status_code = 422
    code = "unknown_role"
    message = "There is no role of that name in this organisation."


def custom_role(name: str, description: str, permissions: Collection[str]) -> Role:
    # A permission dropped from the catalogue since the role was saved grants nothing.
    return Role(
        name=name,
        title=name,
        description=description,
        permissions=frozenset(permissions) & ALL_PERMISSIONS,
        predefined=False,
    )


def role_title(name: str) -> str:
    """How a role name reads, with or without its role at hand: a predefined role's title; a custom
    role's title is its name, and so is the title of a name that no longer resolves. Every surface
    names roles through this."""
    predefined = PREDEFINED_ROLES.get(name)
    return predefined.title if predefined else name


# Built once; answered from the unique (organisation_id, name) index.
_CUSTOM_ROLE_LOOKUP = select(CustomRole.description, CustomRole.permissions).where(
    CustomRole.organisation_id == bindparam("organisation_id"), CustomRole.name == bindparam("name")
)


def role_named(name: str, description: str | None, permissions: Collection[str] | None) -> Role | None:
    """The role called ``name``, given the organisation's custom role of that name as read (its
    description and permissions; None for both when it has none): predefined, custom, or None."""
    predefined = PREDEFINED_ROLES.get(name)
    if predefined is not None:
        return predefined
    return custom_role(name, description or "", permissions) if permissions is not None else None


async def resolve_role(session: AsyncSession, organisation_id: uuid.UUID, name: str) -> Role | None:
    """The role called ``name`` in this organisation: predefined, custom, or None when unknown.
    Predefined names cost no query; a custom one costs one indexed look-up."""
    if name in PREDEFINED_ROLES:
        return PREDEFINED_ROLES[name]
    row = (
        await session.execute(_CUSTOM_ROLE_LOOKUP, {"organisation_id": organisation_id, "name": name})
    ).one_or_none()
    return role_named(name, row.description, row.permissions) if row else None


async def permissions_of(session: AsyncSession, organisation_id: uuid.UUID, name: str) -> frozenset[str]:
    role = await resolve_role(session, organisation_id, name)
    return role.permissions if role else frozenset()


async def existing_role(session: AsyncSession, organisation_id: uuid.UUID, name: str) -> Role:
    role = await resolve_role(session, organisation_id, name)
    if role is None:
        raise UnknownRole(details={"role": name})
    return role


async def grantable_role(session: AsyncSession, principal: Principal, name: str) -> Role:
    """The role called ``name``, provided the caller may grant it."""
    role = await existing_role(session, principal.organisation_id, name)
    ensure_can_grant(principal, role.permissions, what=f"The role {role.name}")
    return role


def may_grant(principal: Principal, role: Role) -> bool:
    """Whether ``grantable_role`` would let the caller hand out ``role``: the same rule
    (``ensure_can_grant``), asked in advance by surfaces that offer only the roles one may grant."""
    try:
        ensure_can_grant(principal, role.permissions, what=role.name)
    except Escalation:
        return False
    return True


async def organisation_roles(session: AsyncSession, principal: Principal) -> list[Role]:
    """Every role of the caller's organisation: the predefined ones first (in their fixed order),
    then its custom roles by name."""
    custom = await session.execute(
        scoped(
            select(CustomRole.name, CustomRole.description, CustomRole.permissions), CustomRole, principal
        ).order_by(CustomRole.name)
    )
    return [*PREDEFINED_ROLES.values(), *(custom_role(*row) for row in custom)]


async def grantable_roles(session: AsyncSession, principal: Principal) -> list[Role]:
    """The roles the caller may grant (invite with, change a member to, reassign members to), in
    ``organisation_roles`` order."""
    roles = await organisation_roles(session, principal)
    return [role for role in roles if may_grant(principal, role)]
