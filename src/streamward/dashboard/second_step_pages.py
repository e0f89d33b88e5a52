"""Signing in beyond the password: the second step (``/login/mfa``: an app's code, a passkey or a
recovery code) and signing in with a passkey alone from the login page. The same services as
``POST /api/user/validate/mfa`` and ``/api/user/validate/passkey``; the challenge, its lifetime and
its wrong-answer budget are theirs (login_step remembers it between the pages)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from fastapi import BackgroundTasks, Request
from fastapi.responses import Response

from streamward.authn import passwordless
from streamward.authn import service as authn
from streamward.authn.mail import mail_backend, send_quietly
from streamward.authn.mfa.errors import InvalidChallenge
from streamward.authn.mfa.passkeys import RelyingParty
from streamward.authn.mfa.second_step import Answer
from streamward.dashboard.core import PUBLIC_PAGE, CheckedForm, flash_redirect, render
from streamward.dashboard.login_step import (
    LoginStep,
    current_step,
    forget_step,
    safe_next,
    sign_in_response,
)
from streamward.dashboard.page_tools import ceremony_json, refusal_json
from streamward.errors import AppError, BadRequest
from streamward.runtime import client_address
from streamward.web.params import RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, note_refusal, reads, writes

router = Router(include_in_schema=False)

SECOND_STEP = "/login/mfa"
TITLE = "Confirm it is you"
EXPIRED = "That sign-in step has expired or was used up. Sign in again."
# A WebAuthn answer is a few hundred bytes; this bounds what json.loads is asked to read.
MAX_ASSERTION_JSON = 16 * 1024


def _answer(form: dict[str, str]) -> Answer | None:
    """The one answer the submitted form carries (each of the page's forms sends one kind), or
    None when its field was left empty (nothing to judge: no attempt is spent on it)."""
    if "assertion" in form:
        assertion = _json_object(form["assertion"])
        return Answer(assertion=assertion) if assertion is not None else None
    if "recovery_code" in form:
        recovery_code = form["recovery_code"].strip()[:64]
        return Answer(recovery_code=recovery_code) if recovery_code else None
    code = (form.get("code") or "").strip()[:32]
    return Answer(code=code) if code else None


def _json_object(value: str) -> dict[str, Any] | None:
    if not value or len(value) > MAX_ASSERTION_JSON:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _step_page(
    request: Request,
    step: LoginStep,
    *,
    error: str | None = None,
    status_code: int = 200,
    recovery: bool = False,
) -> Response:
    return render(
        request,
        "login_mfa.html",
        status_code=status_code,
        title=TITLE,
        step=step,
        error=error,
        recovery_open=recovery or step.factors == ["recoveryCode"],
    )


def _start_again(request: Request) -> Response:
    """Back to the password step, saying why; the remembered step is forgotten."""
    return forget_step(request, flash_redirect(request, "/login", "info", EXPIRED))


@router.get(SECOND_STEP, dependencies=[PUBLIC_PAGE])
@reads
async def second_step_page(request: Request) -> Response:
    step = current_step(request)
    if step is None:
        return _start_again(request)
    return _step_page(request, step)


@router.post(SECOND_STEP, dependencies=[PUBLIC_PAGE])
@writes
async def second_step(
    request: Request, form: CheckedForm, db: DbSession, runtime: RuntimeDep, background: BackgroundTasks
) -> Response:
    step = current_step(request)
    if step is None:
        return _start_again(request)
    recovery = "recovery_code" in form
    answer = _answer(form)
    if answer is None:
        said = "Enter a recovery code." if recovery else "Enter the code your authenticator app shows."
        if "assertion" in form:
            said = "Using a passkey needs JavaScript in your browser."
        return _step_page(request, step, error=said, status_code=400, recovery=recovery)
    settings = runtime.settings
    try:
        result = await authn.complete_second_factor(
            db,
            runtime.login_throttle,
            runtime.secret_box,
            challenge=step.challenge,
            answer=answer,
            client_address=client_address(request),
            lifetime=timedelta(seconds=settings.session_lifetime_seconds),
            rp=RelyingParty.from_settings(settings),
        )
    except InvalidChallenge as spent:
        # Expired, used up by wrong answers, or started elsewhere: only a new password step helps.
        note_refusal(request, spent)
        return _start_again(request)
    except AppError as refused:
        # A wrong answer (counted on the challenge and the account's budget), or that budget spent.
        note_refusal(request, refused)
        response = _step_page(
            request, step, error=refused.message, status_code=refused.status_code, recovery=recovery
        )
        response.headers.update(refused.headers or {})
        return response
    if result.notice is not None:
        # A recovery code was used: its owner is told, after the response (so after the commit).
        background.add_task(send_quietly, mail_backend(settings), result.notice)
    return sign_in_response(request, result, safe_next(step.next_url))


# --- a passkey alone -----------------------------------------------------------------------------------


@router.post("/login/passkey/options", dependencies=[PUBLIC_PAGE])
@writes
async def passwordless_options(
    request: Request, form: CheckedForm, db: DbSession, runtime: RuntimeDep
) -> Response:
    """JSON for passkeys.js: a passwordless challenge for this browser and the options for
    ``navigator.credentials.get()`` (any passkey of this site; the person picks one)."""
    try:
        ceremony = await passwordless.options(
            db,
            runtime.login_throttle,
            RelyingParty.from_settings(runtime.settings),
            client_address=client_address(request),
        )
    except AppError as refused:
        return refusal_json(request, refused)
    return ceremony_json(ceremony)


@router.post("/login/passkey", dependencies=[PUBLIC_PAGE])
@writes
async def passwordless_login(
    request: Request, form: CheckedForm, db: DbSession, runtime: RuntimeDep
) -> Response:
    next_url = safe_next(form.get("next"))
    organisation: uuid.UUID | None = None
    if form.get("organisation"):
        try:
            organisation = uuid.UUID(form["organisation"])
        except ValueError:
            organisation = None

    def again(error: str, status: int, organisations: list[dict[str, str]] | None = None) -> Response:
        return render(
            request,
            "login.html",
            status_code=status,
            title="Sign in",
            next_url=next_url,
            email="",
            error=error,
            organisations=[],
            passkey_organisations=organisations or [],
        )

    assertion = _json_object(form.get("assertion") or "")
    if assertion is None:
        refusal = BadRequest("Signing in with a passkey needs JavaScript in your browser.")
        return again(refusal.message, refusal.status_code)
    settings = runtime.settings
    try:
        result = await passwordless.login(
            db,
            runtime.login_throttle,
            RelyingParty.from_settings(settings),
            challenge_token=(form.get("challenge") or "")[:256],
            assertion=assertion,
            organisation_id=organisation,
            client_address=client_address(request),
            lifetime=timedelta(seconds=settings.session_lifetime_seconds),
        )
    except authn.OrganisationChoiceRequired as choice:
        note_refusal(request, choice)
        organisations = (choice.details or {}).get("organisations", [])
        return again("Choose the organisation, then sign in with your passkey again.", 200, organisations)
    except AppError as refused:
        note_refusal(request, refused)
        response = again(refused.message, refused.status_code)
        response.headers.update(refused.headers or {})
        return response
    return sign_in_response(request, result, next_url)
