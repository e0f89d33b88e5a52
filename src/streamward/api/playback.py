"""Routes of the token service (``/api/v1/splay``), the JWKS, and signing-key rotation.

The token service keeps the documented envelope: ``{"success": true, "data": ...}`` on success and
``{"success": false, "errorCode": <number>, "message": "..."}`` on failure, whatever failed
(credentials, validation, the token), with the documented HTTP status of each number. Beside those
top-level fields every refusal also carries ``error: {code (the number), reason, message, details?}``,
which earlier Streamward clients read. ``SplayRoute`` turns every refusal on these routes into a
``SplayError``; ``install_splay_error_handler`` renders it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import pydantic_core
from fastapi import Body, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from streamward.audit.service import Actor
from streamward.authz.principal import Principal
from streamward.errors import AppError
from streamward.playback import keys, service
from streamward.playback.errors import (
    INVALID_CREDENTIALS,
    MALFORMED_TOKEN,
    NOT_REVOCABLE,
    OTHER_ORGANISATION,
    PARAMETER_MISSING,
    TOKEN_EXPIRED,
    SplayError,
)
from streamward.playback.schemas import (
    Jwk,
    Jwks,
    PlaybackKeyRotation,
    PlaybackKeyRotationOut,
    RevokeRequest,
    SplayReply,
    SplayRequest,
    TokenData,
    VerifyReply,
    VerifyRequest,
)
from streamward.runtime import runtime_of
from streamward.web.access import PUBLIC, require, token_service
from streamward.web.params import RuntimeDep
from streamward.web.routing import Route, Router
from streamward.web.session import DbSession, lookup_source, reads, writes


def as_splay_error(exc: AppError | RequestValidationError) -> SplayError:
    """Any refusal on a token-service route, in the service's terms."""
    if isinstance(exc, SplayError):
        return exc
    if isinstance(exc, RequestValidationError):
        fields = [
            {
                "field": ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "body",
                "problem": err.get("msg", "invalid"),
            }
            for err in exc.errors()
        ]
        return SplayError(
            PARAMETER_MISSING,
            "parameter_missing",
            "Some parameters are missing or invalid.",
            status_code=400,
            details={"fields": fields},
        )
    number = INVALID_CREDENTIALS if exc.status_code in (401, 403) else PARAMETER_MISSING
    converted = SplayError(number, exc.code, exc.message, status_code=exc.status_code, details=exc.details)
    converted.headers = exc.headers
    return converted


class SplayRoute(Route):
    """A route whose refusals, from any dependency or from validation, become SplayErrors. They are
    re-raised (not answered here) so that the request's transaction is rolled back as usual."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def splay_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SplayError:
                raise
            except (AppError, RequestValidationError) as exc:
                raise as_splay_error(exc) from exc

        return splay_handler


# The HTTP status the token service's documentation gives each error number (DJWT, DREV): bad or
# missing credentials are 403 (not 401), and every refusal of a token to revoke is 400. Parameter
# errors (1000) keep the status they were raised with: 400, or 429/413 for a refusal of that kind.
DOCUMENTED_STATUS = {
    INVALID_CREDENTIALS: 403,
    TOKEN_EXPIRED: 403,
    MALFORMED_TOKEN: 400,
    NOT_REVOCABLE: 400,
    OTHER_ORGANISATION: 400,
}


def splay_error_body(exc: SplayError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.number, "reason": exc.code, "message": exc.message}
    if exc.details:
        error["details"] = exc.details
    return {"success": False, "errorCode": exc.number, "message": exc.message, "error": error}


def install_splay_error_handler(app: FastAPI) -> None:
    async def render(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SplayError)
        status = DOCUMENTED_STATUS.get(exc.number, exc.status_code)
        return JSONResponse(splay_error_body(exc), status_code=status, headers=exc.headers)

    app.add_exception_handler(SplayError, render)


splay_router = Router(prefix="/api/v1/splay", tags=["playback tokens"], route_class=SplayRoute)


@splay_router.post("", response_model=SplayReply, summary="Issue a playback token")
@writes
async def issue_token(
    body: SplayRequest,
    principal: Annotated[Principal, token_service("playback:create")],
    db: DbSession,
    runtime: RuntimeDep,
) -> SplayReply:
    request = service.TokenRequest(
        streams=body.streams,
        group_id=body.groupid,
        org_wide=body.orgawide,
        nbf=body.nbf,
        exp=body.exp,
        domain=body.domain,
        ip=body.ip,
        tag=body.tag,
        user=body.user,
        revocable=body.revocable,
        force_disconnect=body.force_disconnect,
    )
    token = await service.issue(db, runtime.secret_box, principal, request, issuer=runtime.settings.base_url)
    return SplayReply(data=TokenData(token=token))


@splay_router.post(
    "/verify", response_model=VerifyReply, dependencies=[PUBLIC], summary="Check a playback token"
)
@reads  # runs on every player start: it must not queue behind writers (SQLite's one write lock)
async def verify_token(body: VerifyRequest, request: Request) -> Response:
    # Where it reads and the runtime are taken from the request, not declared as dependencies: every
    # player start runs this route, and FastAPI resolved each dependency anew on every request.
    where = service.Presentation(stream=body.stream, domain=body.domain, ip=body.ip)
    source = await lookup_source(request)
    issuer = runtime_of(request).settings.base_url
    claims = await service.verify(source, body.token, where, issuer=issuer)
    # VerifyReply's wire shape, serialised at once: validating the reply model again on every player
    # start would cost more than building it.
    reply = {"success": True, "data": {"token": body.token, "valid": True, "claims": claims}}
    return Response(pydantic_core.to_json(reply), media_type="application/json")


@splay_router.post("/revoke", status_code=204, summary="Revoke a revocable playback token")
@writes
async def revoke_token(
    body: RevokeRequest,
    principal: Annotated[Principal, token_service("playback:revoke")],
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    await service.revoke(db, principal, body.token, issuer=runtime.settings.base_url)
    return Response(status_code=204)


jwks_router = Router(tags=["playback tokens"])

# Verifiers may cache the key set briefly; a rotation's new key is only used by new tokens.
JWKS_CACHE_CONTROL = "public, max-age=300"


@jwks_router.get(
    "/.well-known/jwks.json",
    response_model=Jwks,
    dependencies=[PUBLIC],
    summary="Public keys that verify playback tokens",
)
@reads
async def jwks(
    response: Response,
    db: DbSession,
    organisation: Annotated[uuid.UUID | None, Query(description="Only this organisation's keys.")] = None,
) -> Jwks:
    response.headers["cache-control"] = JWKS_CACHE_CONTROL
    published = await keys.published_keys(db, organisation)
    return Jwks(keys=[Jwk.model_validate(keys.jwk_of(key)) for key in published])


keys_router = Router(prefix="/api/organisation/playback-keys", tags=["playback tokens"])


@keys_router.post(
    "/rotate",
    response_model=PlaybackKeyRotationOut,
    summary="New playback signing key; optionally revoke old ones",
)
@writes
async def rotate_keys(
    principal: Annotated[Principal, require("apikey:rotate")],
    db: DbSession,
    runtime: RuntimeDep,
    body: Annotated[PlaybackKeyRotation, Body()] = PlaybackKeyRotation(),
) -> PlaybackKeyRotationOut:
    rotation = await keys.rotate(
        db,
        runtime.secret_box,
        principal.organisation_id,
        revoke_old=body.revoke_old,
        actor=Actor.of(principal),
    )
    return PlaybackKeyRotationOut(kid=rotation.kid, retired=rotation.retired, revoked=rotation.revoked)
