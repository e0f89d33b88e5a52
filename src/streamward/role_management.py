"""Custom roles: an organisation's own permission sets, beside the three predefined roles.

Members refer to a role by name and permissions are resolved on every request
(roles.lookup.resolve_role), so an edit applies to the members' very next request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authz.grants import ensure_can_grant
from streamward.authz.permissions import ALL_PERMISSIONS, PREDEFINED_ROLES, Role, ordered
from streamward.authz.principal import Principal
from streamward.authz.scoping import scoped
from streamward.db import utcnow
from streamward.errors import AppError, BadRequest, NotFound
from streamward.events.catalogue import EventType
from streamward.events.outbox import emit
from streamward.invites.models import Invitation
from streamward.orgs.service import lock_organisation
from streamward.roles.lookup import custom_role, grantable_role
from streamward.roles.models import CustomRole
from streamward.users.models import Account, Membership, new_token_key

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
    custom = (
        await session.execute(scoped(select(CustomRole), CustomRole, principal).order_by(CustomRole.name))
    ).scalars()
    roles = [*PREDEFINED_ROLES.values(), *(_as_role(row) for row in custom)]
    return [RoleWithCount(role, counts.get(role.name, 0)) for role in roles]


async def read_role(session: AsyncSession, principal: Principal, name: str) -> RoleWithCount:
    role = PREDEFINED_ROLES.get(name) or _as_role(await _find(session, principal, name))
    count = await session.scalar(
        scoped(select(func.count()).select_from(Membership), Membership, principal).where(
            Membership.role == name
        )
    )
    return RoleWithCount(role, count or 0)


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
    record(
        session,
        Actor.of(principal),
        "role.created",
        organisation_id=principal.organisation_id,
        target_type="role",
        target_id=name,
        after=_snapshot(role),
    )
    emit(
        session,
        EventType.ROLE_CREATED,
        {"name": name, "permissions": ordered(role.permissions)},
        organisation_id=principal.organisation_id,
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
    record(
        session,
        Actor.of(principal),
        "role.updated",
        organisation_id=principal.organisation_id,
        target_type="role",
        target_id=name,
        before=_snapshot(before),
        after=_snapshot(after),
    )
    emit(
        session,
        EventType.ROLE_UPDATED,
        {"name": name, "permissions": ordered(after.permissions)},
        organisation_id=principal.organisation_id,
    )
    return await read_role(session, principal, name)


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
    members = (
        await session.execute(
            scoped(select(Membership.id, Account.email), Membership, principal)
            .join(Account, Account.id == Membership.account_id)
            .where(Membership.role == name)
        )
    ).all()
    target: Role | None = None
    if members:
        if reassign_to is None:
            raise RoleInUse(details={"memberCount": len(members)})
        if reassign_to == name:
            raise BadRequest(
                "Members cannot be reassigned to the role being deleted.", code="invalid_reassign"
            )
        target = await grantable_role(session, principal, reassign_to)
        await session.execute(
            update(Membership),
            [
                {"id": member_id, "role": target.name, "token_key": new_token_key()}
                for member_id, _ in members
            ],
        )
        for member_id, email in members:
            record(
                session,
                Actor.of(principal),
                "user.role_changed",
                organisation_id=principal.organisation_id,
                target_type="user",
                target_id=member_id,
                before={"role": name},
                after={"role": target.name},
            )
            emit(
                session,
                EventType.USER_ROLE_CHANGED,
                {"userId": str(member_id), "email": email, "from": name, "to": target.name},
                organisation_id=principal.organisation_id,
            )
    revoked = await session.execute(
        update(Invitation)
        .where(
            Invitation.organisation_id == principal.organisation_id,
            Invitation.role == name,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    await session.delete(row)
    await session.flush()
    outcome = {
        "reassignedTo": target.name if target else None,
        "reassignedMembers": len(members),
        "revokedInvitations": revoked.rowcount,  # type: ignore[attr-defined]
    }
    record(
        session,
        Actor.of(principal),
        "role.deleted",
        organisation_id=principal.organisation_id,
        target_type="role",
        target_id=name,
        before=_snapshot(doomed),
        after=outcome,
    )
    emit(session, EventType.ROLE_DELETED, {"name": name} | outcome, organisation_id=principal.organisation_id)
