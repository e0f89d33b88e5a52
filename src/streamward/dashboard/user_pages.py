"""The Organisation page's User management tab: users, one user, invitations (DOMAIN.md "Users tab").

Every POST here ends in a 303 to a GET page that says, once, what happened (``flash``): success, a
no-op, or the service's refusal. Nothing rides on the URL, so a reload repeats nothing and says nothing.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import BackgroundTasks, Query, Request
from fastapi.responses import Response

from streamward import role_management as roles
from streamward.authn.mail import mail_backend, send_quietly
from streamward.authn.mfa import factors, overview
from streamward.authz.permissions import ADMIN_ROLE
from streamward.dashboard.core import (
    CheckedForm,
    Flash,
    Viewer,
    flash_redirect,
    page,
    render,
    role_catalogue,
    role_label,
    take_flash,
)
from streamward.dashboard.page_tools import list_url
from streamward.errors import AppError, NotFound
from streamward.invites import service as invites
from streamward.pagination import DEFAULT_LIMIT
from streamward.roles.lookup import grantable_roles, role_title
from streamward.runtime import Runtime
from streamward.users import service as users
from streamward.web.params import Cursor, RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, note_refusal, reads, writes

router = Router(include_in_schema=False)

USERS = "/organisation/users"
INVITE = "/organisation/users/invite"
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
SOLE_ADMIN = "The only Administrator cannot be deleted: make another user an Administrator first."
MFA_RESET_WARNING = (
    "Every authenticator app, passkey and recovery code of this person is removed — in every "
    "organisation they belong to — and all their sessions end. They are told by mail, and sign in "
    "with their password alone (or set up a new second factor, if this organisation requires one)."
)
# The services' refusals in the words of this page (the code stays the service's).
REFUSALS = {
    "last_admin": "The organisation must keep at least one Administrator (nanoAdmin): "
    "make another user an Administrator first.",
}


def _role_label(name: str) -> str:
    return role_label(name, role_title(name))


def _user_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such user.") from None


def _refused(request: Request, refusal: AppError, back: str) -> Response:
    """A dialog's action the service refused: back to the page the dialog was on (the list, when
    the user is not found), saying why. Whatever the attempt wrote is rolled back (note_refusal)."""
    note_refusal(request, refusal)
    if isinstance(refusal, NotFound):
        back = USERS
    text = REFUSALS.get(refusal.code, refusal.message)
    return flash_redirect(request, back, "danger", f"Nothing was changed. {text}")


def _issued_invite(flash: Flash | None) -> dict[str, Any] | None:
    """The invitation a flash carries (its link is shown on this page only, once)."""
    invite = flash.data.get("invite") if flash else None
    return invite if isinstance(invite, dict) else None


async def _invite_context(request: Request, db: DbSession, viewer: Viewer) -> dict[str, Any]:
    """What the invite form needs, in the dialog and on the fallback page; the flash is taken here
    so that the form keeps the role the last invitation was for."""
    taken = take_flash(request)
    issued = _issued_invite(taken)
    # Only roles the viewer could grant are offered; the service refuses the others anyway.
    offered = await grantable_roles(db, viewer.principal)
    return {
        "flash": taken,
        "issued": issued,
        "invite_roles": offered,
        "invite_role_data": role_catalogue(offered),
        "invite_role": (issued or {}).get("role") or "nanoUser",
    }


@router.get("/organisation/users")
@reads
async def user_list(
    request: Request,
    viewer: Annotated[Viewer, page("user:read")],
    db: DbSession,
    role: Cursor = None,
    q: Annotated[str | None, Query(max_length=320)] = None,
    cursor: Cursor = None,
) -> Response:
    available = await roles.list_roles(db, viewer.principal)
    listed = await users.list_users(
        db,
        viewer.principal,
        role=role or None,
        email_starts_with=q or None,
        limit=DEFAULT_LIMIT,
        cursor=cursor,
        also=overview.FACTOR_KIND_COLUMNS,  # each row's second factors, in the same statement
    )
    can_invite = viewer.can("user:invite")
    pending = (
        await invites.list_invitations(
            db, viewer.principal, status="pending", role=None, email_starts_with=None, limit=50, cursor=None
        )
        if can_invite
        else None
    )
    admins = next((r.member_count for r in available if r.role.name == ADMIN_ROLE), 0)
    invite = await _invite_context(request, db, viewer) if can_invite else {}
    return render(
        request,
        "users.html",
        title=f"{viewer.organisation.name} · User management",
        section="organisation",
        tab="users",
        rows=listed.items,
        cursor=cursor,
        first_url=list_url(USERS, role=role, q=q),
        next_url=list_url(USERS, role=role, q=q, cursor=listed.next_cursor) if listed.next_cursor else None,
        roles=available,
        role_labels={r.role.name: _role_label(r.role.name) for r in available},
        role_filter=role or "",
        q=q or "",
        pending=pending.items if pending else None,
        sole_admin=admins == 1,
        admin_role=ADMIN_ROLE,
        sole_admin_reason=SOLE_ADMIN,
        reset_warning=RESET_WARNING,
        delete_warning=DELETE_WARNING,
        **invite,
    )


@router.get("/organisation/users/invite")
@reads
async def invite_form(
    request: Request, viewer: Annotated[Viewer, page("user:invite")], db: DbSession
) -> Response:
    """The invite form as a page of its own: the dialog's fallback without JavaScript, and where
    an invitation made there is shown."""
    return _invite_page(request, await _invite_context(request, db, viewer))


def _invite_page(request: Request, context: dict[str, Any], status_code: int = 200) -> Response:
    return render(
        request,
        "invite.html",
        status_code=status_code,
        title="Invite new user",
        section="organisation",
        tab="users",
        **context,
    )


def _lifetime_days(form: dict[str, str]) -> int:
    """The form's validity in days, as typed; its range is the service's to check."""
    try:
        return int(form.get("expires_in_days") or invites.DEFAULT_LIFETIME_DAYS)
    except ValueError:
        raise invites.InvalidInviteLifetime() from None


@router.post("/organisation/users/invite")
@writes
async def invite_create(
    request: Request, viewer: Annotated[Viewer, page("user:invite")], form: CheckedForm, db: DbSession
) -> Response:
    runtime: Runtime = request.app.state.runtime
    back = USERS if form.get("back") == "users" else INVITE
    chosen = form.get("role", "")
    email = (form.get("email") or "").strip() or None
    try:
        issued = await invites.create_invitation(
            db,
            viewer.principal,
            role=chosen,
            email=email,
            expires_in_days=_lifetime_days(form),
            base_url=runtime.settings.base_url,
        )
    except AppError as refused:
        note_refusal(request, refused)  # rolled back after the page below is rendered
        # A form error keeps what was typed: the fallback page, with the error, answers this POST.
        context = await _invite_context(request, db, viewer)
        typed = {
            "invite_role": chosen or context["invite_role"],
            "invite_email": email or "",
            "invite_days": form.get("expires_in_days") or str(invites.DEFAULT_LIFETIME_DAYS),
        }
        return _invite_page(request, context | typed | {"error": refused.message}, refused.status_code)
    invitation = issued.invitation
    # The link is a secret shown once. It never rides in a URL (history, logs, Referer): the 303
    # carries it in the sealed, HttpOnly, session-bound flash cookie, and the page it leads to shows
    # it once and clears the cookie; only the link's hash is stored. A reload mints nothing new.
    return flash_redirect(
        request,
        back,
        "success",
        "Invitation created. Copy the link now: it is shown only this once.",
        data={
            "invite": {
                "url": issued.url,
                "role": invitation.role,
                "role_label": _role_label(invitation.role),
                "email": invitation.email,
                "expires": invitation.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
            }
        },
    )


@router.post("/organisation/users/invite/{invite_id}/revoke")
@writes
async def invite_revoke(
    request: Request,
    invite_id: uuid.UUID,
    viewer: Annotated[Viewer, page("user:invite")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    try:
        await invites.revoke_invitation(db, viewer.principal, invite_id)
    except AppError as refused:
        return _refused(request, refused, USERS)
    return flash_redirect(request, USERS, "success", "The invitation was revoked: its link no longer works.")


@router.get("/organisation/users/{user_id}")
@reads
async def user_detail(
    request: Request, user_id: str, viewer: Annotated[Viewer, page("user:read")], db: DbSession
) -> Response:
    view = await users.get_user(db, viewer.principal, _user_id(user_id))
    grantable = await grantable_roles(db, viewer.principal)
    # The comparison in the role dialog needs the current role too, grantable or not.
    compared = grantable + ([view.role] if view.role and view.role not in grantable else [])
    admins = await users.count_role_holders(db, viewer.principal, ADMIN_ROLE)
    mfa = (await overview.kinds_of(db, [view.membership.account_id])).get(view.membership.account_id)
    return render(
        request,
        "user.html",
        title=view.email,
        section="organisation",
        tab="users",
        user=view,
        user_role_label=_role_label(view.membership.role),
        roles=grantable,
        role_data=role_catalogue(compared),
        reset_warning=RESET_WARNING,
        delete_warning=DELETE_WARNING,
        role_warning=ROLE_WARNING,
        mfa=mfa,
        mfa_reset_warning=MFA_RESET_WARNING,
        sole_admin=admins == 1 and view.membership.role == ADMIN_ROLE,
        sole_admin_reason=SOLE_ADMIN,
        is_self=view.membership.id == viewer.principal.membership_id,
    )


@router.post("/organisation/users/{user_id}/permission")
@writes
async def change_permission(
    request: Request,
    user_id: str,
    viewer: Annotated[Viewer, page("user:edit")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    target = _user_id(user_id)
    back = f"{USERS}/{target}"
    try:
        before = await users.get_user(db, viewer.principal, target)
        before_role, before_key = before.membership.role, before.membership.token_key
        changed = await users.change_role(db, viewer.principal, target, form.get("role", ""))
    except AppError as refused:
        return _refused(request, refused, back)
    label = _role_label(changed.membership.role)
    if changed.membership.role == before_role and changed.membership.token_key == before_key:
        # The service's no-op (same role): nothing changed, nothing audited, no token ended.
        text = f"Nothing was changed: {before.email} already is {label}."
        return flash_redirect(request, back, "info", text)
    if target == viewer.principal.membership_id:
        # One's own role change ends one's own session too.
        text = f"Your permission level is now {label}. Sign in again."
        return flash_redirect(request, "/login", "info", text)
    return flash_redirect(
        request,
        back,
        "success",
        f"{before.email} is now {label}. Their bintu tokens were ended; the new rights apply at once.",
    )


@router.post("/organisation/users/{user_id}/token-reset")
@writes
async def reset_token(
    request: Request, user_id: str, viewer: Annotated[Viewer, page()], form: CheckedForm, db: DbSession
) -> Response:
    # `page()` only: anyone may reset their own token; the service checks user:token_reset for others.
    target = _user_id(user_id)
    back = USERS if form.get("back") == "list" else f"{USERS}/{target}"
    try:
        membership = await users.reset_token_key(db, viewer.principal, target)
        email = (await users.get_user(db, viewer.principal, membership.id)).email
    except AppError as refused:
        return _refused(request, refused, back)
    if target == viewer.principal.membership_id:
        return flash_redirect(request, "/login", "info", "Your token was reset: sign in again.")
    return flash_redirect(
        request, back, "success", f"The token of {email} was reset: all their bintu tokens stopped working."
    )


@router.post("/organisation/users/{user_id}/delete")
@writes
async def delete_user(
    request: Request,
    user_id: str,
    viewer: Annotated[Viewer, page("user:delete")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    target = _user_id(user_id)
    back = USERS if form.get("back") == "list" else f"{USERS}/{target}"
    try:
        email = (await users.get_user(db, viewer.principal, target)).email
        await users.delete_user(db, viewer.principal, target)
    except AppError as refused:
        return _refused(request, refused, back)
    if target == viewer.principal.membership_id:
        return flash_redirect(request, "/login", "info", "You left the organisation.")
    return flash_redirect(request, USERS, "success", f"{email} was removed from the organisation.")


@router.post("/organisation/users/{user_id}/mfa-reset")
@writes
async def reset_second_factors(
    request: Request,
    user_id: str,
    viewer: Annotated[Viewer, page("user:edit")],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
    background: BackgroundTasks,
) -> Response:
    # The API's DELETE /api/user/{id}/mfa: the service refuses a member whose role is above the
    # viewer's, removes the factors, ends the sessions, audits, and hands back the mail to send.
    target = _user_id(user_id)
    back = f"{USERS}/{target}"
    try:
        email = (await users.get_user(db, viewer.principal, target)).email
        message = await factors.reset_member(db, viewer.principal, target)
    except AppError as refused:
        return _refused(request, refused, back)
    # After the response, so after the commit that removed the factors.
    background.add_task(send_quietly, mail_backend(runtime.settings), message)
    if target == viewer.principal.membership_id:
        return flash_redirect(request, "/login", "info", "Your second factors were removed: sign in again.")
    return flash_redirect(
        request,
        back,
        "success",
        f"The second factors of {email} were removed and their sessions ended; they were told by mail.",
    )
