"""One's own second factors: the overview, authenticator apps, recovery codes. Enrolment routes: a
session whose organisation requires a second factor it has not set up yet reaches these (and the
passkey routes, and logout), nothing else. The API key has no factors: 400 ``user_required``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import BackgroundTasks, Response

from streamward.authn.mail import mail_backend, send_quietly
from streamward.authn.mfa import factors, overview
from streamward.authn.mfa.schemas import (
    FactorOut,
    FactorProof,
    MfaStatus,
    RecoveryCodesOut,
    TotpConfirm,
    TotpConfirmed,
    TotpCreate,
    TotpCreated,
)
from streamward.authz.principal import Principal
from streamward.web.access import ENROLMENT
from streamward.web.params import RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes

router = Router(prefix="/api/user/mfa", tags=["second factor"])


@router.get(
    "", response_model=MfaStatus, summary="Your second factors, and whether your organisation requires one"
)
@reads
async def read_second_factors(principal: Annotated[Principal, ENROLMENT], db: DbSession) -> MfaStatus:
    return MfaStatus.of(await overview.summary(db, principal))


@router.post(
    "/totp",
    status_code=201,
    response_model=TotpCreated,
    summary="Start setting up an authenticator app: its secret and QR code (shown once)",
    description="The app counts once confirmed with a code it shows "
    "(`POST /api/user/mfa/totp/{id}/confirm`). Adding a factor needs a login of the last 10 minutes, "
    "or `password` (or `code`): 403 `proof_required` otherwise.",
)
@writes
async def start_authenticator_app(
    principal: Annotated[Principal, ENROLMENT],
    db: DbSession,
    runtime: RuntimeDep,
    body: TotpCreate | None = None,
) -> TotpCreated:
    body = body or TotpCreate()
    started = await factors.start_totp(
        db,
        principal,
        runtime.secret_box,
        runtime.login_throttle,
        name=body.name,
        password=body.password,
        code=body.code,
    )
    return TotpCreated(
        id=started.factor.id,
        name=started.factor.name,
        secret=started.secret,
        otpauth_uri=started.otpauth_uri,
        qr_svg=started.qr_svg,
    )


@router.post(
    "/totp/{factor_id:uuid}/confirm",
    response_model=TotpConfirmed,
    response_model_exclude_none=True,
    summary="Confirm an authenticator app with a code it shows; ends your other sessions",
    description="The account's first second factor also answers its ten recovery codes, this once.",
)
@writes
async def confirm_authenticator_app(
    factor_id: uuid.UUID,
    body: TotpConfirm,
    principal: Annotated[Principal, ENROLMENT],
    db: DbSession,
    runtime: RuntimeDep,
    background: BackgroundTasks,
) -> TotpConfirmed:
    confirmed = await factors.confirm_totp(db, principal, runtime.secret_box, factor_id, code=body.code)
    # Sent after the response (and so after the commit that confirmed the app).
    background.add_task(send_quietly, mail_backend(runtime.settings), confirmed.notice)
    return TotpConfirmed(
        **FactorOut.of(confirmed.factor).model_dump(), recovery_codes=confirmed.recovery_codes
    )


@router.delete(
    "/totp/{factor_id:uuid}",
    status_code=204,
    summary="Remove an authenticator app (needs your password or a fresh code); ends your other sessions",
)
@writes
async def remove_authenticator_app(
    factor_id: uuid.UUID,
    principal: Annotated[Principal, ENROLMENT],
    db: DbSession,
    runtime: RuntimeDep,
    body: FactorProof | None = None,
) -> Response:
    proof = body or FactorProof()
    await factors.remove_factor(
        db,
        principal,
        runtime.login_throttle,
        runtime.secret_box,
        kind=factors.TOTP,
        factor_id=factor_id,
        password=proof.password,
        code=proof.code,
    )
    return Response(status_code=204)


@router.post(
    "/recovery-codes",
    response_model=RecoveryCodesOut,
    summary="Replace your recovery codes (needs your password or a fresh code); shown once",
    description="Every earlier code stops working; your other sessions end.",
)
@writes
async def replace_recovery_codes(
    principal: Annotated[Principal, ENROLMENT],
    db: DbSession,
    runtime: RuntimeDep,
    body: FactorProof | None = None,
) -> RecoveryCodesOut:
    proof = body or FactorProof()
    codes = await factors.regenerate_recovery_codes(
        db, principal, runtime.login_throttle, runtime.secret_box, password=proof.password, code=proof.code
    )
    return RecoveryCodesOut(recovery_codes=codes)
