"""Sign-in and sign-out pages."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import BackgroundTasks, Request
from fastapi.responses import Response

from streamward.authn import password_changes
from streamward.authn import service as authn
from streamward.authn.mail import mail_backend, send_quietly
from streamward.authn.mfa.errors import MfaRequired
from streamward.authn.mfa.passkeys import RelyingParty
from streamward.dashboard.core import (
    PUBLIC_PAGE,
    CheckedForm,
    Viewer,
    flash,
    flash_redirect,
    page,
    redirect,
    render,
    role_label,
)
from streamward.dashboard.login_step import remember_step, safe_next, sign_in_response, step_from_details
from streamward.dashboard.second_step_pages import SECOND_STEP
from streamward.dashboard.security import clear_session_cookie, session_token
from streamward.errors import AppError
from streamward.invites import acceptance
from streamward.roles.lookup import role_title
from streamward.runtime import Runtime, client_address
from streamward.web.authenticate import principal_for
from streamward.web.params import RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, note_refusal, reads, writes

router = Router(include_in_schema=False)


@router.get("/login", dependencies=[PUBLIC_PAGE])
@reads
async def login_page(request: Request, next: str | None = None) -> Response:
    return render(
        request, "login.html", title="Sign in", next_url=safe_next(next), email="", organisations=[]
    )


@router.post("/login", dependencies=[PUBLIC_PAGE])
@writes
async def login(request: Request, form: CheckedForm, db: DbSession, runtime: RuntimeDep) -> Response:
    settings = runtime.settings
    email, password = form.get("email", "")[:320], form.get("password", "")
    next_url = safe_next(form.get("next"))
    organisation: uuid.UUID | None = None
    if form.get("organisation"):
        try:
            organisation = uuid.UUID(form["organisation"])
        except ValueError:
            organisation = None

    def again(error: str, organisations: list[dict[str, str]] | None = None, status: int = 400) -> Response:
        return render(
            request,
            "login.html",
            status_code=status,
            title="Sign in",
            next_url=next_url,
            email=email,
            error=error,
            organisations=organisations or [],
        )

    if not email or not password or len(password) > 128:
        return again("Enter your email and password.")
    try:
        result = await authn.login(
            db,
            runtime.login_throttle,
            email=email,
            password=password,
            organisation_id=organisation,
            client_address=client_address(request),
            lifetime=timedelta(seconds=settings.session_lifetime_seconds),
            rp=RelyingParty.from_settings(settings),
        )
    except MfaRequired as second_step:
        # The password was right: the challenge is kept (the refusal keeps its changes) and this
        # browser remembers it for the next page, which asks for the second factor.
        note_refusal(request, second_step)
        step = step_from_details(second_step.details or {}, email=email, next_url=next_url)
        return remember_step(request, redirect(SECOND_STEP), step)
    except authn.OrganisationChoiceRequired as choice:
        note_refusal(request, choice)
        organisations = (choice.details or {}).get("organisations", [])
        return again("Choose the organisation to sign in to.", organisations, status=200)
    except AppError as refused:
        note_refusal(request, refused)
        # The refusal's own side effects (audit of a failed attempt) are still committed.
        return again(refused.message, status=refused.status_code)
    return sign_in_response(request, result, next_url)


@router.post("/logout")
@writes
async def logout(
    viewer: Annotated[Viewer, page(enrolment=True)], form: CheckedForm, db: DbSession
) -> Response:
    await authn.logout(db, viewer.principal)
    response = redirect("/login")
    clear_session_cookie(response)
    return response


async def _current_member_token(request: Request, db: DbSession, runtime: Runtime) -> tuple[str, str] | None:
    """(bintu token, email) of whoever is signed in on this browser, if anyone."""
    token = session_token(request)
    if not token:
        return None
    principal = await principal_for(request, db, runtime, token=token)
    return (token, principal.email or "") if principal else None


@router.get("/invite/{token}", dependencies=[PUBLIC_PAGE])
@reads
async def invitation(request: Request, token: str, db: DbSession, runtime: RuntimeDep) -> Response:
    # Over budget: the 429 (or 503) page with Retry-After, by the shared error handler.
    await runtime.link_throttle.invitations.charge(client_address(request))
    return await _invitation_page(request, token, db, runtime)


async def _invitation_page(
    request: Request,
    token: str,
    db: DbSession,
    runtime: Runtime,
    *,
    error: str | None = None,
    email: str = "",
    status_code: int = 200,
) -> Response:
    try:
        usable = await acceptance.preview_invitation(db, token)
    except acceptance.InvalidInvite:
        # Expired, revoked, used or unknown: one page, as the API gives one answer (a link must not
        # reveal which invitations exist or were used).
        return render(request, "invite_invalid.html", status_code=404, title="Invitation not valid")
    signed_in = await _current_member_token(request, db, runtime)
    return render(
        request,
        "invite_accept.html",
        status_code=status_code,
        title=f"Join {usable.organisation.name}",
        invite=usable,
        token=token,
        signed_in_email=signed_in[1] if signed_in else None,
        error=error,
        email=email or (usable.invitation.email or ""),
    )


@router.post("/invite/{token}", dependencies=[PUBLIC_PAGE])
@writes
async def accept_invitation(
    request: Request,
    token: str,
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    # Over budget: the 429 (or 503) page with Retry-After, by the shared error handler.
    await runtime.link_throttle.invitations.charge(client_address(request))
    settings = runtime.settings
    signed_in = await _current_member_token(request, db, runtime) if form.get("mode") == "join" else None
    if form.get("mode") == "join" and signed_in is None:
        return redirect(f"/login?next=/invite/{token}")
    email = (form.get("email") or "").strip()
    try:
        result = await acceptance.accept_invitation(
            db,
            runtime.login_throttle,
            token,
            email=None if signed_in else email,
            password=None if signed_in else form.get("password") or "",
            bintu_token=signed_in[0] if signed_in else None,
            client_address=client_address(request),
            lifetime=timedelta(seconds=settings.session_lifetime_seconds),
        )
    except acceptance.InvalidInvite as invalid:
        note_refusal(request, invalid)
        return render(request, "invite_invalid.html", status_code=404, title="Invitation not valid")
    except AppError as refused:
        note_refusal(request, refused)
        return await _invitation_page(
            request, token, db, runtime, error=refused.message, email=email, status_code=refused.status_code
        )
    # To the security page instead when the organisation requires a second factor the account lacks.
    response = sign_in_response(request, result, "/organisation/overview")
    role = result.membership.role
    welcome = f"Welcome to {result.organisation.name}! You joined as {role_label(role, role_title(role))}."
    return flash(request, response, "success", welcome, session=result.issued.token)


@router.get("/password/reset", dependencies=[PUBLIC_PAGE])
@reads
async def password_reset_request_page(request: Request) -> Response:
    return render(request, "password_reset.html", title="Reset your password", sent=False)


@router.post("/password/reset", dependencies=[PUBLIC_PAGE])
@writes
async def password_reset_request(
    request: Request,
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
    background: BackgroundTasks,
) -> Response:
    settings = runtime.settings
    email = (form.get("email") or "").strip()[:320]
    if email:
        message = await password_changes.request_password_reset(
            db,
            runtime.login_throttle,
            email=email,
            client_address=client_address(request),
            base_url=settings.base_url,
        )
        if message is not None:
            background.add_task(send_quietly, mail_backend(settings), message)
    # The same page whether or not the email has an account.
    return render(request, "password_reset.html", title="Check your mail", sent=True)


@router.get("/password/reset/{token}", dependencies=[PUBLIC_PAGE])
@reads
async def password_reset_form(request: Request, token: str) -> Response:
    return render(request, "password_new.html", title="Choose a new password", token=token)


@router.post("/password/reset/{token}", dependencies=[PUBLIC_PAGE])
@writes
async def password_reset_complete(
    request: Request,
    token: str,
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    await runtime.link_throttle.password_resets.charge(client_address(request))
    password = form.get("password") or ""
    if password != (form.get("password_again") or ""):
        return render(
            request,
            "password_new.html",
            status_code=400,
            title="Choose a new password",
            token=token,
            error="The two passwords differ.",
        )
    try:
        await password_changes.complete_password_reset(
            db,
            token,
            new_password=password,
            client_address=client_address(request),
        )
    except AppError as refused:
        note_refusal(request, refused)
        return render(
            request,
            "password_new.html",
            status_code=refused.status_code,
            title="Choose a new password",
            token=token,
            error=refused.message,
        )
    response = flash_redirect(
        request, "/login", "success", "Your password was changed. Sign in with the new one."
    )
    clear_session_cookie(response)  # and the anonymous CSRF token: the login page hands out a fresh one
    return response
