"""Passkeys: registering, renaming and removing one's own (enrolment routes: reachable by a session
whose organisation requires a second factor it has not set up yet), and signing in with one alone."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import BackgroundTasks, Body, Response

from streamward.api.login import login_response
from streamward.authn import passwordless
from streamward.authn.mail import mail_backend, send_quietly
from streamward.authn.mfa import factors, passkeys
from streamward.authn.mfa.passkey_schemas import (
    PasskeyCeremony,
    PasskeyRegistered,
    PasskeyRegistration,
    PasskeyRename,
    PasswordlessLogin,
)
from streamward.authn.mfa.passkeys import Ceremony, RelyingParty
from streamward.authn.mfa.schemas import FactorOut, FactorProof
from streamward.authn.schemas import LoginResponse
from streamward.authz.principal import Principal
from streamward.web.access import ENROLMENT, PUBLIC
from streamward.web.params import ClientAddress, RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, writes

enrolment = Router(prefix="/api/user/mfa/passkeys", tags=["second factor"])
sign_in = Router(prefix="/api/user", tags=["authentication"])


def _ceremony(ceremony: Ceremony) -> PasskeyCeremony:
    return PasskeyCeremony(
        challenge=ceremony.token, expires_at=ceremony.expires_at, public_key=ceremony.public_key
    )


@enrolment.post(
    "/options",
    response_model=PasskeyCeremony,
    summary="Start registering a passkey: the options for navigator.credentials.create()",
    description="Adding a factor needs a login of the last 10 minutes, or `password` (or `code`): "
    "403 `proof_required` otherwise.",
)
@writes
async def registration_options(
    principal: Annotated[Principal, ENROLMENT],
    db: DbSession,
    runtime: RuntimeDep,
    address: ClientAddress,
    body: Annotated[FactorProof | None, Body()] = None,
) -> PasskeyCeremony:
    rp = RelyingParty.from_settings(runtime.settings)
    ceremony = await passkeys.registration_options(
        db,
        principal,
        rp,
        client_address=address,
        throttle=runtime.login_throttle,
        box=runtime.secret_box,
        password=body.password if body else None,
        code=body.code if body else None,
    )
    return _ceremony(ceremony)


@enrolment.post(
    "",
    status_code=201,
    response_model=PasskeyRegistered,
    response_model_exclude_unset=True,
    summary="Register a passkey (the authenticator's answer to the options); ends your other sessions",
)
@writes
async def register_passkey(
    body: PasskeyRegistration,
    principal: Annotated[Principal, ENROLMENT],
    db: DbSession,
    runtime: RuntimeDep,
    address: ClientAddress,
    background: BackgroundTasks,
) -> PasskeyRegistered:
    registered = await passkeys.register(
        db,
        principal,
        RelyingParty.from_settings(runtime.settings),
        challenge_token=body.challenge,
        name=body.name,
        credential=body.credential,
        client_address=address,
    )
    # Sent after the response (and so after the commit that stored the passkey).
    background.add_task(send_quietly, mail_backend(runtime.settings), registered.notice)
    out = PasskeyRegistered.model_validate(registered.passkey)
    if registered.recovery_codes:
        out.recovery_codes = registered.recovery_codes
    return out


@enrolment.patch("/{passkey_id:uuid}", response_model=FactorOut, summary="Rename one of your passkeys")
@writes
async def rename_passkey(
    passkey_id: uuid.UUID, body: PasskeyRename, principal: Annotated[Principal, ENROLMENT], db: DbSession
) -> FactorOut:
    return FactorOut.model_validate(await passkeys.rename(db, principal, passkey_id, name=body.name))


@enrolment.delete(
    "/{passkey_id:uuid}",
    status_code=204,
    summary="Remove one of your passkeys (needs your password or an app code); ends your other sessions",
)
@writes
async def remove_passkey(
    passkey_id: uuid.UUID,
    body: FactorProof,
    principal: Annotated[Principal, ENROLMENT],
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    await factors.remove_factor(
        db,
        principal,
        runtime.login_throttle,
        runtime.secret_box,
        kind=factors.PASSKEY,
        factor_id=passkey_id,
        password=body.password,
        code=body.code,
    )
    return Response(status_code=204)


@sign_in.post(
    "/passkey/options",
    response_model=PasskeyCeremony,
    dependencies=[PUBLIC],
    summary="Start a passwordless login: the options for navigator.credentials.get()",
)
@writes
async def passwordless_options(db: DbSession, runtime: RuntimeDep, address: ClientAddress) -> PasskeyCeremony:
    rp = RelyingParty.from_settings(runtime.settings)
    return _ceremony(await passwordless.options(db, runtime.login_throttle, rp, client_address=address))


@sign_in.post(
    "/validate/passkey",
    response_model=LoginResponse,
    response_model_exclude_none=True,
    dependencies=[PUBLIC],
    summary="Log in with a passkey alone: exchange its assertion for a bintu token",
)
@writes
async def validate_passkey(
    body: PasswordlessLogin, db: DbSession, runtime: RuntimeDep, address: ClientAddress
) -> LoginResponse:
    result = await passwordless.login(
        db,
        runtime.login_throttle,
        RelyingParty.from_settings(runtime.settings),
        challenge_token=body.challenge,
        assertion=body.assertion,
        organisation_id=body.organisation,
        client_address=address,
        lifetime=timedelta(seconds=runtime.settings.session_lifetime_seconds),
        with_api_key=True,
    )
    return login_response(runtime, result)


# What the app includes: both, side by side (as api.streams' routers, for the same reason).
routers = (enrolment, sign_in)
