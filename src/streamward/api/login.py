from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import BackgroundTasks, Request, Response

from streamward.authn import password_changes, service
from streamward.authn.mail import mail_backend, send_quietly
from streamward.authn.mfa import second_step
from streamward.authn.mfa.passkeys import RelyingParty
from streamward.authn.mfa.schemas import MfaLoginRequest
from streamward.authn.schemas import (
    LoginRequest,
    LoginResponse,
    OrganisationRef,
    PasswordChange,
    PasswordResetComplete,
    PasswordResetRequest,
    PasswordResetRequested,
    UserRef,
)
from streamward.authz.principal import Principal
from streamward.errors import BadRequest
from streamward.orgs.service import reveal_api_key
from streamward.roles.lookup import role_title
from streamward.roles.schemas import RoleRef
from streamward.runtime import Runtime, client_address
from streamward.web.access import AUTHENTICATED, ENROLMENT, PUBLIC
from streamward.web.params import ClientAddress, RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, writes

router = Router(prefix="/api/user", tags=["authentication"])


def login_response(runtime: Runtime, result: service.LoginResult) -> LoginResponse:
    """The answer of every login (password, second step, passkey alone): bintu's login body, with
    the API key when the login revealed it (``with_api_key``: roles holding ``apikey:read``, not a
    session limited to setting up a second factor; the reveal is audited with the login)."""
    api_key = reveal_api_key(runtime.secret_box, result.organisation) if result.api_key_revealed else None
    return LoginResponse(
        token=result.issued.token,
        expires_at=result.issued.session.expires_at,
        organisation=OrganisationRef(id=result.organisation.id, name=result.organisation.name),
        role=RoleRef(name=result.membership.role, title=role_title(result.membership.role)),
        user=UserRef(id=result.membership.id, email=result.account.email),
        api_key=api_key,
    )


@router.post(
    "/validate",
    response_model=LoginResponse,
    response_model_exclude_none=True,
    dependencies=[PUBLIC],
    summary="Log in: exchange email and password for a bintu token",
    description="An account with a second factor gets 401 `mfa_required` instead, with `details` = "
    "`{challenge, expiresAt, factors, publicKey?}`: finish at `POST /api/user/validate/mfa`.",
)
@writes
async def validate(
    body: LoginRequest, db: DbSession, runtime: RuntimeDep, address: ClientAddress
) -> LoginResponse:
    settings = runtime.settings
    result = await service.login(
        db,
        runtime.login_throttle,
        email=body.email,
        password=body.password,
        organisation_id=body.organisation,
        client_address=address,
        lifetime=timedelta(seconds=settings.session_lifetime_seconds),
        rp=RelyingParty.from_settings(settings),
        with_api_key=True,
    )
    return login_response(runtime, result)


@router.post(
    "/validate/mfa",
    response_model=LoginResponse,
    response_model_exclude_none=True,
    dependencies=[PUBLIC],
    summary="Finish a login with the second factor: an app's code, a passkey or a recovery code",
    description="The challenge is the one `POST /api/user/validate` answered with (401 `mfa_required`), "
    "from the same client, within 5 minutes; five wrong answers use it up.",
)
@writes
async def validate_second_factor(
    body: MfaLoginRequest,
    db: DbSession,
    runtime: RuntimeDep,
    address: ClientAddress,
    background: BackgroundTasks,
) -> LoginResponse:
    settings = runtime.settings
    result = await service.complete_second_factor(
        db,
        runtime.login_throttle,
        runtime.secret_box,
        challenge=body.challenge,
        answer=second_step.Answer(code=body.code, assertion=body.assertion, recovery_code=body.recovery_code),
        client_address=address,
        lifetime=timedelta(seconds=settings.session_lifetime_seconds),
        rp=RelyingParty.from_settings(settings),
        with_api_key=True,
    )
    if result.notice is not None:
        # After the response, so after the commit that used the recovery code up.
        background.add_task(send_quietly, mail_backend(settings), result.notice)
    return login_response(runtime, result)


@router.post("/logout", status_code=204, summary="End the presented bintu token")
@writes
async def logout(principal: Annotated[Principal, ENROLMENT], db: DbSession) -> Response:
    if principal.session_id is None:
        raise BadRequest(
            "Only a bintu token can be logged out; the API key is rotated instead.", code="not_a_session"
        )
    await service.logout(db, principal)
    return Response(status_code=204)


@router.put(
    "/password",
    status_code=204,
    summary="Change your password (needs the current one); ends your other sessions",
)
@writes
async def change_password(
    body: PasswordChange,
    principal: Annotated[Principal, AUTHENTICATED],
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    await password_changes.change_password(
        db,
        runtime.login_throttle,
        principal,
        current_password=body.current_password,
        new_password=body.new_password,
    )
    return Response(status_code=204)


@router.post(
    "/password/reset",
    status_code=202,
    response_model=PasswordResetRequested,
    dependencies=[PUBLIC],
    summary="Mail a password reset link; answers the same whether or not the email has an account",
)
@writes
async def request_password_reset(
    body: PasswordResetRequest,
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    background: BackgroundTasks,
) -> PasswordResetRequested:
    settings = runtime.settings
    message = await password_changes.request_password_reset(
        db,
        runtime.login_throttle,
        email=body.email,
        client_address=client_address(request, trust_forwarded_for=settings.trust_forwarded_for),
        base_url=settings.base_url,
    )
    if message is not None:
        # Sent after the response (and so after the commit that stored the link).
        background.add_task(send_quietly, mail_backend(settings), message)
    return PasswordResetRequested()


@router.post(
    "/password/reset/{token}",
    status_code=204,
    dependencies=[PUBLIC],
    summary="Set a new password with a reset link's token; ends every session of the account",
)
@writes
async def complete_password_reset(
    token: str,
    body: PasswordResetComplete,
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    address = client_address(request, trust_forwarded_for=runtime.settings.trust_forwarded_for)
    # Per address, valid link or not: each attempt hashes a password.
    await runtime.link_throttle.password_resets.charge(address)
    await password_changes.complete_password_reset(
        db, token, new_password=body.password, client_address=address
    )
    return Response(status_code=204)
