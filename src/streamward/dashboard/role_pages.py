"""Custom roles: the list (predefined and custom, with member counts), create, edit, delete with
reassignment. Every rule is the roles service's; this module only turns forms into its calls."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Request
from fastapi.responses import Response
from pydantic import ValidationError

from streamward import role_management as roles
from streamward.authz.permissions import CATALOGUE, PermissionInfo, Role
from streamward.dashboard.core import CheckedForm, Viewer, flash_redirect, page, render
from streamward.dashboard.page_tools import form_values, validation_message
from streamward.errors import AppError
from streamward.roles.lookup import may_grant
from streamward.roles.schemas import RoleCreate, RoleUpdate
from streamward.web.routing import Router
from streamward.web.session import DbSession, note_refusal, reads, writes

router = Router(include_in_schema=False)

RoleName = Annotated[str, Path(max_length=64)]

CREATED = "The role {} was created. Invite users with it, or give it to members on their user page."
UPDATED = "The role {} was saved. Its members have the new permissions from their next request on."
DELETED = "The role {} was deleted."
REASSIGN_WARNING = "They move to the role you choose: their bintu tokens end and they sign in again."
DELETE_WARNING = "Pending invitations for this role are revoked: their links stop working."
_LABELS = {"name": "Name", "description": "Description", "permissions": "Permissions"}
_HINTS = {
    "name": "start with a letter, then up to 63 letters, digits, '_', '-' or '.'",
}


def _permission_groups() -> list[tuple[str, list[PermissionInfo]]]:
    """The catalogue grouped by resource (the part before ':'), both in catalogue order."""
    groups: dict[str, list[PermissionInfo]] = {}
    for info in CATALOGUE:
        groups.setdefault(info.name.split(":", 1)[0], []).append(info)
    return list(groups.items())


PERMISSION_GROUPS = _permission_groups()


async def _list_page(request: Request, viewer: Viewer, db: DbSession) -> Response:
    listed = await roles.list_roles(db, viewer.principal)
    # The service's own no-escalation rule, asked in advance to decide which controls to show.
    grantable = [r.role for r in listed if may_grant(viewer.principal, r.role)]
    manageable = {role.name for role in grantable if not role.predefined}
    return render(
        request,
        "roles.html",
        title="Roles",
        section="roles",
        roles=listed,
        catalogue=CATALOGUE,
        manageable=manageable,
        # Where members of a deleted role may go: any role the viewer could grant.
        targets=grantable,
        reassign_warning=REASSIGN_WARNING,
        delete_warning=DELETE_WARNING,
    )


@router.get("/roles")
@reads
async def role_list(
    request: Request, viewer: Annotated[Viewer, page("role:manage")], db: DbSession
) -> Response:
    return await _list_page(request, viewer, db)


def _form_page(
    request: Request,
    *,
    editing: Role | None,
    name: str,
    description: str,
    permissions: set[str],
    member_count: int = 0,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "role_form.html",
        status_code=status_code,
        title=f"Edit role {editing.name}" if editing else "New role",
        section="roles",
        editing=editing,
        name=name,
        description=description,
        selected=permissions,
        member_count=member_count,
        groups=PERMISSION_GROUPS,
        error=error,
    )


@router.get("/roles/new")
@reads
async def role_new(request: Request, viewer: Annotated[Viewer, page("role:manage")]) -> Response:
    return _form_page(request, editing=None, name="", description="", permissions=set())


@router.post("/roles")
@writes
async def role_create(
    request: Request, viewer: Annotated[Viewer, page("role:manage")], form: CheckedForm, db: DbSession
) -> Response:
    name, description = form.get("name", "").strip(), form.get("description", "").strip()
    permissions = await form_values(request, "permission")

    def again(error: str, status_code: int) -> Response:
        return _form_page(
            request,
            editing=None,
            name=name,
            description=description,
            permissions=set(permissions),
            error=error,
            status_code=status_code,
        )

    try:
        body = RoleCreate(name=name, description=description, permissions=permissions)
    except ValidationError as invalid:
        return again(validation_message(invalid, _LABELS, _HINTS), 422)
    try:
        async with db.begin_nested():  # a refusal undoes only what this call did
            await roles.create_role(
                db,
                viewer.principal,
                name=body.name,
                description=body.description,
                permissions=body.permissions,
            )
    except AppError as refused:
        note_refusal(request, refused)
        return again(refused.message, refused.status_code)
    return flash_redirect(request, "/roles", "success", CREATED.format(body.name))


@router.get("/roles/{name}/edit")
@reads
async def role_edit(
    request: Request, name: RoleName, viewer: Annotated[Viewer, page("role:manage")], db: DbSession
) -> Response:
    found = await roles.read_role(db, viewer.principal, name)
    if found.role.predefined:
        raise roles.PredefinedRole()
    return _form_page(
        request,
        editing=found.role,
        name=found.role.name,
        description=found.role.description,
        permissions=set(found.role.permissions),
        member_count=found.member_count,
    )


@router.post("/roles/{name}/edit")
@writes
async def role_update(
    request: Request,
    name: RoleName,
    viewer: Annotated[Viewer, page("role:manage")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    found = await roles.read_role(db, viewer.principal, name)
    if found.role.predefined:
        raise roles.PredefinedRole()
    description = form.get("description", "").strip()
    permissions = await form_values(request, "permission")

    def again(error: str, status_code: int) -> Response:
        return _form_page(
            request,
            editing=found.role,
            name=found.role.name,
            description=description,
            permissions=set(permissions),
            member_count=found.member_count,
            error=error,
            status_code=status_code,
        )

    try:
        body = RoleUpdate(description=description, permissions=permissions)
    except ValidationError as invalid:
        return again(validation_message(invalid, _LABELS), 422)
    try:
        async with db.begin_nested():
            await roles.update_role(
                db, viewer.principal, name, description=body.description, permissions=body.permissions
            )
    except AppError as refused:
        note_refusal(request, refused)
        return again(refused.message, refused.status_code)
    return flash_redirect(request, "/roles", "success", UPDATED.format(name))


@router.post("/roles/{name}/delete")
@writes
async def role_delete(
    request: Request,
    name: RoleName,
    viewer: Annotated[Viewer, page("role:manage")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    try:
        async with db.begin_nested():
            await roles.delete_role(db, viewer.principal, name, reassign_to=form.get("reassign_to") or None)
    except roles.RoleInUse:
        text = "Members hold this role: choose the role to move them to."
        return flash_redirect(request, "/roles", "danger", f"Nothing was changed. {text}")
    except AppError as refused:
        note_refusal(request, refused)
        return flash_redirect(request, "/roles", "danger", f"Nothing was changed. {refused.message}")
    return flash_redirect(request, "/roles", "success", DELETED.format(name))
