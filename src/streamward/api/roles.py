"""Roles and their permission profiles (`/api/permission`, as in bintu), and custom-role management.

Reading follows the documented access: the list for whoever may read users (nanoAdmin, nanoUser),
one profile and every change with `role:manage`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Response

from streamward import role_management as service
from streamward.authz.permissions import CATALOGUE
from streamward.authz.principal import Principal
from streamward.roles.models import CustomRole
from streamward.roles.schemas import (
    PermissionInfoOut,
    RoleCreate,
    RoleList,
    RoleOut,
    RoleProfile,
    RoleUpdate,
)
from streamward.schemas import column_path, column_query
from streamward.users.models import Membership
from streamward.web.access import require
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes

router = Router(prefix="/api/permission", tags=["roles"])

RoleName = Annotated[str, column_path(CustomRole.name)]


def _out(found: service.RoleWithCount) -> RoleOut:
    return RoleOut(**RoleProfile.of(found.role).model_dump(), member_count=found.member_count)


@router.get("/list", response_model=RoleList, summary="Predefined and custom roles, with member counts")
@reads
async def list_roles(principal: Annotated[Principal, require("user:read")], db: DbSession) -> RoleList:
    return RoleList(
        items=[_out(found) for found in await service.list_roles(db, principal)],
        catalogue=[PermissionInfoOut(name=p.name, label=p.label) for p in CATALOGUE],
    )


@router.get("", response_model=RoleOut, summary="One role's permission profile")
@reads
async def read_role(
    principal: Annotated[Principal, require("role:manage")],
    db: DbSession,
    name: Annotated[str, column_query(CustomRole.name, min_length=1)],
) -> RoleOut:
    return _out(await service.read_role(db, principal, name))


@router.post("", response_model=RoleOut, status_code=201, summary="Create a custom role")
@writes
async def create_role(
    body: RoleCreate, principal: Annotated[Principal, require("role:manage")], db: DbSession
) -> RoleOut:
    created = await service.create_role(
        db, principal, name=body.name, description=body.description, permissions=body.permissions
    )
    return _out(created)


@router.put(
    "/{name}",
    response_model=RoleOut,
    summary="Edit a custom role; applies to its members' next request",
)
@writes
async def update_role(
    name: RoleName, body: RoleUpdate, principal: Annotated[Principal, require("role:manage")], db: DbSession
) -> RoleOut:
    updated = await service.update_role(
        db, principal, name, description=body.description, permissions=body.permissions
    )
    return _out(updated)


@router.delete("/{name}", status_code=204, summary="Delete a custom role")
@writes
async def delete_role(
    name: RoleName,
    principal: Annotated[Principal, require("role:manage")],
    db: DbSession,
    reassign_to: Annotated[
        str | None,
        column_query(
            Membership.role, alias="reassignTo", description="Role for the members who hold this one."
        ),
    ] = None,
) -> Response:
    await service.delete_role(db, principal, name, reassign_to=reassign_to)
    return Response(status_code=204)
