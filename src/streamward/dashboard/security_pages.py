"""The signed-in person's second factors: authenticator apps, passkeys and recovery codes
(``/account/security``). The same services as ``/api/user/mfa``; every rule is theirs.

These pages declare ``page(enrolment=True)``: a session that its organisation limits to enrolment
(the organisation requires a second factor the account does not have) reaches them, and logout,
and nothing else.

Secrets shown once follow the overview's rule (org_pages): never in a URL, and recovery codes ride
in the sealed, session-bound flash of the 303 after the POST that made them, shown by the page it
leads to and gone on reload. The one exception is a new authenticator app's secret and QR code,
which answer the POST that made them (the app is pending until its first code confirms it; a
reload starts another pending app, and unconfirmed ones are dropped by the service).
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import BackgroundTasks, Request
from fastapi.responses import Response

from streamward.authn.mail import mail_backend, send_quietly
from streamward.authn.mfa import factors, overview, passkeys, recovery
from streamward.authn.mfa.models import Passkey, TotpFactor
from streamward.authn.mfa.passkeys import RelyingParty
from streamward.dashboard.core import SECURITY_PAGE, CheckedForm, Viewer, flash_redirect, page, render
from streamward.dashboard.page_tools import ceremony_json, refusal_json
from streamward.errors import AppError, BadRequest, NotFound
from streamward.runtime import client_address
from streamward.schemas import ColumnText
from streamward.web.params import RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, note_refusal, reads, writes

router = Router(include_in_schema=False)

TITLE = "Second factor and passkeys"
SHOWN_ONCE = "Save your recovery codes now: they are shown only this once."
# Few codes left: the page suggests making new ones (a badge in the warning colour).
CODES_RUNNING_LOW = 3
# What a page names each kind of factor, in its messages.
KIND_NAMES = {factors.TOTP: "authenticator app", factors.PASSKEY: "passkey"}
_TOTP_NAME = ColumnText(TotpFactor.name)
_PASSKEY_NAME = ColumnText(Passkey.name)
# A RegistrationResponseJSON is a few hundred bytes (a few KiB with a certificate chain); the
# dashboard's body limit bounds it anyway, this bounds what json.loads is asked to read.
MAX_CREDENTIAL_JSON = 64 * 1024


def _factor_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such factor.") from None


def _proof(form: dict[str, str]) -> dict[str, str | None]:
    """The password or the app code the confirmation dialogs ask for, as the service takes them
    (one of the two; it refuses neither). A typed code wins over a password field that a password
    manager may have filled in on its own."""
    code = (form.get("code") or "").strip()[:32]
    if code:
        return {"password": None, "code": code}
    return {"password": (form.get("password") or "")[:128] or None, "code": None}


def _refused(request: Request, refusal: AppError) -> Response:
    """An action the service refused: back to the security page, saying why (rolled back)."""
    note_refusal(request, refusal)
    response = flash_redirect(request, SECURITY_PAGE, "danger", f"Nothing was changed. {refusal.message}")
    response.headers.update(refusal.headers or {})
    return response


def _codes_shown(request: Request, text: str, codes: list[str] | None) -> Response:
    """The 303 after a change; ``codes`` (new recovery codes) go with it, shown once."""
    if not codes:
        return flash_redirect(request, SECURITY_PAGE, "success", text)
    return flash_redirect(
        request, SECURITY_PAGE, "warn", f"{text} {SHOWN_ONCE}", data={"recovery_codes": codes}
    )


@router.get("/account/security")
@reads
async def security_page(
    request: Request, viewer: Annotated[Viewer, page(enrolment=True)], db: DbSession
) -> Response:
    mfa = await overview.summary(db, viewer.principal)
    return render(
        request,
        "security.html",
        title=TITLE,
        mfa=mfa,
        # Adding a factor later than just after signing in asks for the password (the service's rule).
        needs_proof=not await factors.freshly_signed_in(db, viewer.principal),
        codes_total=recovery.CODE_COUNT,
        codes_running_low=mfa.recovery_codes_remaining <= CODES_RUNNING_LOW,
    )


# --- authenticator apps ------------------------------------------------------------------------------


def _grouped(secret: str) -> str:
    """The base32 secret in groups of four, as people read and type it (apps ignore the spaces)."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@router.post("/account/security/totp")
@writes
async def start_totp(
    request: Request,
    viewer: Annotated[Viewer, page(enrolment=True)],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    name = (form.get("name") or "").strip()
    try:
        cleaned = _TOTP_NAME.clean(name, field="Name") if name else None
        enrolment = await factors.start_totp(
            db,
            viewer.principal,
            runtime.secret_box,
            runtime.login_throttle,
            name=cleaned,
            **_proof(form),
        )
    except AppError as refused:
        return _refused(request, refused)
    return render(
        request,
        "security_totp.html",
        title="Add an authenticator app",
        factor=enrolment.factor,
        secret=enrolment.secret,
        secret_grouped=_grouped(enrolment.secret),
        qr_svg=enrolment.qr_svg,
    )


@router.post("/account/security/totp/{factor_id}/confirm")
@writes
async def confirm_totp(
    request: Request,
    factor_id: str,
    viewer: Annotated[Viewer, page(enrolment=True)],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
    background: BackgroundTasks,
) -> Response:
    target = _factor_id(factor_id)
    try:
        confirmed = await factors.confirm_totp(
            db, viewer.principal, runtime.secret_box, target, code=(form.get("code") or "")[:32]
        )
    except AppError as refused:
        if refused.code != "invalid_code":
            return _refused(request, refused)
        note_refusal(request, refused)
        # The app holds the secret already (scanned or typed): only the code is asked again. The
        # secret itself is not shown again (it is sealed; starting over makes a new one).
        return render(
            request,
            "security_totp.html",
            status_code=refused.status_code,
            title="Add an authenticator app",
            factor_id=target,
            name=form.get("name") or "",
            error=refused.message,
        )
    text = f"The authenticator app “{confirmed.factor.name}” was added. Your other sessions were signed out."
    # Sent after the response (and so after the commit), as the API does.
    background.add_task(send_quietly, mail_backend(runtime.settings), confirmed.notice)
    return _codes_shown(request, text, confirmed.recovery_codes)


async def _remove(
    request: Request,
    viewer: Viewer,
    db: DbSession,
    runtime: RuntimeDep,
    form: dict[str, str],
    *,
    kind: str,
    factor_id: str,
) -> Response:
    target = _factor_id(factor_id)
    try:
        await factors.remove_factor(
            db,
            viewer.principal,
            runtime.login_throttle,
            runtime.secret_box,
            kind=kind,
            factor_id=target,
            **_proof(form),
        )
    except AppError as refused:
        return _refused(request, refused)
    return flash_redirect(
        request,
        SECURITY_PAGE,
        "success",
        f"The {KIND_NAMES[kind]} was removed. Your other sessions were signed out.",
    )


@router.post("/account/security/totp/{factor_id}/remove")
@writes
async def remove_totp(
    request: Request,
    factor_id: str,
    viewer: Annotated[Viewer, page(enrolment=True)],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    return await _remove(request, viewer, db, runtime, form, kind=factors.TOTP, factor_id=factor_id)


@router.post("/account/security/recovery-codes")
@writes
async def regenerate_recovery_codes(
    request: Request,
    viewer: Annotated[Viewer, page(enrolment=True)],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    try:
        codes = await factors.regenerate_recovery_codes(
            db, viewer.principal, runtime.login_throttle, runtime.secret_box, **_proof(form)
        )
    except AppError as refused:
        return _refused(request, refused)
    return _codes_shown(request, "New recovery codes were made; the earlier ones no longer work.", codes)


# --- passkeys ----------------------------------------------------------------------------------------


@router.post("/account/security/passkeys/options")
@writes
async def passkey_options(
    request: Request,
    viewer: Annotated[Viewer, page(enrolment=True)],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    """JSON for passkeys.js: the options for ``navigator.credentials.create()`` and the challenge to
    send back with the new credential (it is bound to this account and this client)."""
    try:
        ceremony = await passkeys.registration_options(
            db,
            viewer.principal,
            RelyingParty.from_settings(runtime.settings),
            client_address=client_address(request),
            throttle=runtime.login_throttle,
            box=runtime.secret_box,
            **_proof(form),
        )
    except AppError as refused:
        return refusal_json(request, refused)
    return ceremony_json(ceremony)


def credential_json(value: str) -> dict[str, Any]:
    """The browser's answer as passkeys.js put it into the form: a JSON object, or a 400."""
    if not value:
        raise BadRequest("Adding a passkey needs JavaScript in your browser.", code="javascript_required")
    try:
        parsed = json.loads(value) if len(value) <= MAX_CREDENTIAL_JSON else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise BadRequest("The browser's answer could not be read.", code="invalid_passkey")
    return parsed


@router.post("/account/security/passkeys")
@writes
async def register_passkey(
    request: Request,
    viewer: Annotated[Viewer, page(enrolment=True)],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
    background: BackgroundTasks,
) -> Response:
    try:
        name = _PASSKEY_NAME.clean((form.get("name") or "").strip(), field="Name")
        registered = await passkeys.register(
            db,
            viewer.principal,
            RelyingParty.from_settings(runtime.settings),
            challenge_token=form.get("challenge") or "",
            name=name,
            credential=credential_json(form.get("credential") or ""),
            client_address=client_address(request),
        )
    except AppError as refused:
        return _refused(request, refused)
    text = f"The passkey “{registered.passkey.name}” was added. Your other sessions were signed out."
    background.add_task(send_quietly, mail_backend(runtime.settings), registered.notice)
    return _codes_shown(request, text, registered.recovery_codes)


@router.post("/account/security/passkeys/{passkey_id}/rename")
@writes
async def rename_passkey(
    request: Request,
    passkey_id: str,
    viewer: Annotated[Viewer, page(enrolment=True)],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    target = _factor_id(passkey_id)
    try:
        name = _PASSKEY_NAME.clean((form.get("name") or "").strip(), field="Name")
        renamed = await passkeys.rename(db, viewer.principal, target, name=name)
    except AppError as refused:
        return _refused(request, refused)
    return flash_redirect(request, SECURITY_PAGE, "success", f"The passkey is now called “{renamed.name}”.")


@router.post("/account/security/passkeys/{passkey_id}/remove")
@writes
async def remove_passkey(
    request: Request,
    passkey_id: str,
    viewer: Annotated[Viewer, page(enrolment=True)],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    return await _remove(request, viewer, db, runtime, form, kind=factors.PASSKEY, factor_id=passkey_id)
