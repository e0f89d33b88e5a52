"""The Organisation page's User management tab: users, one user, invitations (DOMAIN.md "Users tab")."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from streamward.dashboard.core import CheckedForm, Viewer, page, redirect, render, role_catalogue
from streamward.dashboard.page_tools import list_url
from streamward.db import DbSession
from streamward.errors import AppError, NotFound
from streamward.invites import service as invites
from streamward.pagination import DEFAULT_LIMIT
from streamward.roles import service as roles
from streamward.runtime import Runtime
from streamward.users import service as users

router = APIRouter(include_in_schema=False)

DONE = {
    "token_reset": "The user's token was reset: all their bintu tokens stopped working.",
    "deleted": "The user was removed from the organisation.",
    "role_changed": (
        "The permission level was updated. The user's bintu tokens were ended; the new rights apply at once."
    ),
    "invite_revoked": "The invitation was revoked: its link no longer works.",
}
RESET_WARNING = (
    "Every active bintu token of this user stops working at once; they have to sign in again. "
    "Playback tokens they issued stay valid until they expire."
)
DELETE_WARNING = (
    "The user is removed from this organisation and all their bintu tokens stop working. "
    "Playback tokens they issued stay valid until they expire."
)
ROLE_WARNING = (
    "The new permissions take effect immediately: a downgraded user loses rights on their very next "
    "request. Their current bintu tokens end, and they sign in again."
)


def _user_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such user.") from None


async def _roles(db: DbSession, viewer: Viewer) -> list[roles.RoleWithCount]:
    return await roles.list_roles(db, viewer.principal)


@router.get("/organisation/users")
async def user_list(
    request: Request,
    viewer: Annotated[Viewer, page("user:read")],
    db: DbSession,
    role: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=320)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    done: str | None = None,
) -> Response:
    available = await _roles(db, viewer)
    listed = await users.list_users(
        db,
        viewer.principal,
        role=role or None,
        email_starts_with=q or None,
        limit=DEFAULT_LIMIT,
        cursor=cursor,
    )
    pending = (
        await invites.list_invitations(
            db, viewer.principal, status="pending", role=None, email_starts_with=None, limit=50, cursor=None
        )
        if viewer.can("user:invite")
        else None
    )
    return render(
        request,
        "users.html",
        title=f"{viewer.organisation.name} · User management",
        section="organisation",
        tab="users",
        rows=listed.items,
        cursor=cursor,
        first_url=list_url("/organisation/users", role=role, q=q),
        next_url=list_url("/organisation/users", role=role, q=q, cursor=listed.next_cursor)
        if listed.next_cursor
        else None,
        roles=available,
        role_titles={r.role.name: r.role.title for r in available},
        role_filter=role or "",
        q=q or "",
        pending=pending.items if pending else None,
        notice=DONE.get(done or ""),
        reset_warning=RESET_WARNING,
        delete_warning=DELETE_WARNING,
    )


@router.get("/organisation/users/invite")
async def invite_form(
    request: Request, viewer: Annotated[Viewer, page("user:invite")], db: DbSession
) -> Response:
    return await _invite_page(request, viewer, db)


async def _invite_page(
    request: Request,
    viewer: Viewer,
    db: DbSession,
    *,
    issued: invites.IssuedInvite | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    # Only roles the viewer could grant are offered; the service refuses the others anyway.
    offered = [r.role for r in await _roles(db, viewer) if r.role.permissions <= viewer.principal.permissions]
    return render(
        request,
        "invite.html",
        status_code=status_code,
        title="Invite new user",
        section="organisation",
        tab="users",
        roles=offered,
        role_data=role_catalogue(offered),
        issued=issued,
        error=error,
    )


@router.post("/organisation/users/invite")
async def invite_create(
    request: Request, viewer: Annotated[Viewer, page("user:invite")], form: CheckedForm, db: DbSession
) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        days = int(form.get("expires_in_days") or 7)
        if not 1 <= days <= 30:
            raise ValueError
    except ValueError:
        return await _invite_page(
            request, viewer, db, error="Choose a validity of 1 to 30 days.", status_code=400
        )
    try:
        issued = await invites.create_invitation(
            db,
            viewer.principal,
            role=form.get("role", ""),
            email=(form.get("email") or "").strip() or None,
            expires_in_days=days,
            base_url=runtime.settings.base_url,
        )
    except AppError as refused:
        return await _invite_page(request, viewer, db, error=refused.message, status_code=refused.status_code)
    # The link is shown once, on this response; only its hash is stored.
    return await _invite_page(request, viewer, db, issued=issued)


@router.post("/organisation/users/invite/{invite_id}/revoke")
async def invite_revoke(
    invite_id: uuid.UUID, viewer: Annotated[Viewer, page("user:invite")], form: CheckedForm, db: DbSession
) -> Response:
    await invites.revoke_invitation(db, viewer.principal, invite_id)
    return redirect("/organisation/users?done=invite_revoked")


@router.get("/organisation/users/{user_id}")
async def user_detail(
    request: Request,
    user_id: str,
    viewer: Annotated[Viewer, page("user:read")],
    db: DbSession,
    done: str | None = None,
) -> Response:
    view = await users.get_user(db, viewer.principal, _user_id(user_id))
    available = [r.role for r in await _roles(db, viewer)]
    grantable = [r for r in available if r.permissions <= viewer.principal.permissions]
    return render(
        request,
        "user.html",
        title=view.email,
        section="organisation",
        tab="users",
        user=view,
        roles=grantable,
        role_data=role_catalogue(grantable),
        notice=DONE.get(done or ""),
        reset_warning=RESET_WARNING,
        delete_warning=DELETE_WARNING,
        role_warning=ROLE_WARNING,
        is_self=view.membership.id == viewer.principal.membership_id,
    )


@router.post("/organisation/users/{user_id}/permission")
async def change_permission(
    user_id: str, viewer: Annotated[Viewer, page("user:edit")], form: CheckedForm, db: DbSession
) -> Response:
    target = _user_id(user_id)
    await users.change_role(db, viewer.principal, target, form.get("role", ""))
    if target == viewer.principal.membership_id:
        return redirect("/login")  # one's own role change ends one's own session too
    return redirect(f"/organisation/users/{target}?done=role_changed")


@router.post("/organisation/users/{user_id}/token-reset")
async def reset_token(
    user_id: str, viewer: Annotated[Viewer, page()], form: CheckedForm, db: DbSession
) -> Response:
    # `page()` only: anyone may reset their own token; the service checks user:token_reset for others.
    target = _user_id(user_id)
    await users.reset_token_key(db, viewer.principal, target)
    if target == viewer.principal.membership_id:
        return redirect("/login")
    back = form.get("back") or ""
    return redirect(
        "/organisation/users?done=token_reset"
        if back == "list"
        else f"/organisation/users/{target}?done=token_reset"
    )


@router.post("/organisation/users/{user_id}/delete")
async def delete_user(
    user_id: str, viewer: Annotated[Viewer, page("user:delete")], form: CheckedForm, db: DbSession
) -> Response:
    target = _user_id(user_id)
    await users.delete_user(db, viewer.principal, target)
    if target == viewer.principal.membership_id:
        return redirect("/login")
    return redirect("/organisation/users?done=deleted")
