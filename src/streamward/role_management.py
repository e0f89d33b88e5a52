"""Custom roles: an organisation's own permission sets, beside the three predefined roles.

Members refer to a role by name and permissions are resolved on every request
(roles.lookup.resolve_role), so an edit applies to the members' very next request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import record_change
from streamward.authz.grants import ensure_can_grant
from streamward.authz.permissions import ALL_PERMISSIONS, PREDEFINED_ROLES, Role, ordered
from streamward.authz.principal import Principal
from streamward.authz.scoping import scoped
from streamward.db import utcnow
from streamward.errors import AppError, BadRequest, NotFound
from streamward.events.catalogue import EventType
from streamward.invites import service as invites
from streamward.orgs.service import lock_organisation
from streamward.roles.lookup import custom_role, grantable_role, organisation_roles
from streamward.roles.models import CustomRole
from streamward.users import service as users
from streamward.users.models import Membership

_RESERVED = {name.lower() for name in PREDEFINED_ROLES}


class RoleExists(AppError):
    status_code = 409
    code = "role_exists"
    message = "The organisation has a role of that name already."


class ReservedRoleName(AppError):
    status_code = 409
    code = "role_name_reserved"
    message = "That name belongs to a predefined role."


class PredefinedRole(AppError):
    status_code = 409
    code = "predefined_role"
    message = "Predefined roles cannot be changed or deleted."


class RoleInUse(AppError):
    status_code = 409
    code = "role_in_use"
    message = "Members hold this role; give `reassignTo` to move them to another role first."


class UnknownPermission(AppError):
    status_code = 422
    code = "unknown_permission"
    message = "Some permissions are not in the catalogue."


@dataclass(frozen=True)
class RoleWithCount:
    role: Role
    member_count: int


def _checked_permissions(names: Iterable[str]) -> frozenset[str]:
    permissions = frozenset(names)
    unknown = sorted(permissions - ALL_PERMISSIONS)
    if unknown:
        raise UnknownPermission(details={"unknown": unknown})
    return permissions


def _as_role(row: CustomRole) -> Role:
    return custom_role(row.name, row.description, row.permissions)


def _snapshot(role: Role) -> dict[str, Any]:
    return {"description": role.description, "permissions": ordered(role.permissions)}


async def _member_counts(session: AsyncSession, principal: Principal) -> dict[str, int]:
    statement = scoped(select(Membership.role, func.count()).group_by(Membership.role), Membership, principal)
    return {name: count for name, count in (await session.execute(statement)).all()}


async def _find(
    session: AsyncSession, principal: Principal, name: str, *, for_update: bool = False
) -> CustomRole:
    statement = scoped(select(CustomRole).where(CustomRole.name == name), CustomRole, principal)
    if for_update:
        statement = statement.with_for_update()
    found = (await session.execute(statement)).scalar_one_or_none()
    if found is None:
        raise NotFound("No such role.")
    return found


async def list_roles(session: AsyncSession, principal: Principal) -> list[RoleWithCount]:
    """Predefined roles first (in their fixed order), then custom roles by name."""
    counts = await _member_counts(session, principal)
    roles = await organisation_roles(session, principal)
    return [RoleWithCount(role, counts.get(role.name, 0)) for role in roles]


async def read_role(session: AsyncSession, principal: Principal, name: str) -> RoleWithCount:
    role = PREDEFINED_ROLES.get(name) or _as_role(await _find(session, principal, name))
    return RoleWithCount(role, await users.count_role_holders(session, principal, name))


async def create_role(
    session: AsyncSession, principal: Principal, *, name: str, description: str, permissions: list[str]
) -> RoleWithCount:
    if name.lower() in _RESERVED:
        raise ReservedRoleName()
    granted = _checked_permissions(permissions)
    ensure_can_grant(principal, granted, what=f"The role {name}")
    row = CustomRole(
        organisation_id=principal.organisation_id,
        name=name,
        description=description,
        permissions=ordered(granted),
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # the unique (organisation, name) index; also decides concurrent creates
        raise RoleExists() from None
    role = _as_role(row)
    record_change(
        session,
        principal,
        "role.created",
        organisation_id=principal.organisation_id,
        target_type="role",
        target_id=name,
        event=EventType.ROLE_CREATED,
        payload=EventType.ROLE_CREATED.payload(name=name, permissions=ordered(role.permissions)),
        after=_snapshot(role),
    )
    return RoleWithCount(role, 0)


async def update_role(
    session: AsyncSession,
    principal: Principal,
    name: str,
    *,
    description: str | None,
    permissions: list[str] | None,
) -> RoleWithCount:
    """Edit a custom role. The caller must hold every permission of the role before and after
    the edit: adding one they lack is escalation, and stripping a role more powerful than their
    own would let them demote its holders."""
    if name in PREDEFINED_ROLES:
        raise PredefinedRole()
    row = await _find(session, principal, name, for_update=True)
    before = _as_role(row)
    granted = _checked_permissions(permissions) if permissions is not None else before.permissions
    ensure_can_grant(principal, before.permissions | granted, what=f"The role {name}")
    if granted == before.permissions and description in (None, before.description):
        return await read_role(session, principal, name)  # nothing changes: nothing to record
    if description is not None:
        row.description = description
    row.permissions = ordered(granted)
    row.updated_at = utcnow()
    await session.flush()
    after = _as_role(row)
    record_change(
        session,
        principal,
        "role.updated",
        organisation_id=principal.organisation_id,
        target_type="role",
        target_id=name,
        event=EventType.ROLE_UPDATED,
        payload=EventType.ROLE_UPDATED.payload(name=name, permissions=ordered(after.permissions)),
        before=_snapshot(before),
        after=_snapshot(after),
    )
    return await read_role(session, principal, name)


async def _reassigned_to(
    session: AsyncSession, principal: Principal, name: str, reassign_to: str | None
) -> Role | None:
    """Where the holders of the role being deleted go: None when it has none; refused when it has
    some and ``reassign_to`` names no role the caller may grant (or the role itself)."""
    held = await users.count_role_holders(session, principal, name)
    if not held:
        return None
    if reassign_to is None:
        raise RoleInUse(details={"memberCount": held})
    if reassign_to == name:
        raise BadRequest("Members cannot be reassigned to the role being deleted.", code="invalid_reassign")
    return await grantable_role(session, principal, reassign_to)


async def delete_role(
    session: AsyncSession, principal: Principal, name: str, *, reassign_to: str | None
) -> None:
    """Delete a custom role. Its members move to ``reassign_to`` (a role change for each: new token
    key, audit entry, event); without it a role still held is refused. Pending invitations for the
    role are revoked, since nobody could join with it any more."""
    if name in PREDEFINED_ROLES:
        raise PredefinedRole()
    # Serialised with role changes and joins, so no member can take the role while it goes.
    await lock_organisation(session, principal.organisation_id)
    row = await _find(session, principal, name)
    doomed = _as_role(row)
    ensure_can_grant(principal, doomed.permissions, what=f"The role {name}")
    target = await _reassigned_to(session, principal, name, reassign_to)
    moved = await users.reassign_role_holders(session, principal, name, target) if target else 0
    revoked = await invites.revoke_for_role(session, principal, name)
    await session.delete(row)
    await session.flush()
    outcome = {
        "reassignedTo": target.name if target else None,
        "reassignedMembers": moved,
        "revokedInvitations": revoked,
    }
    record_change(
        session,
        principal,
        "role.deleted",
        organisation_id=principal.organisation_id,
        target_type="role",
        target_id=name,
        event=EventType.ROLE_DELETED,
        payload=EventType.ROLE_DELETED.payload(name=name, **outcome),
        before=_snapshot(doomed),
        after=outcome,
    )
