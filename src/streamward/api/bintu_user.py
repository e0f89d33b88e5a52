"""bintu account routes that older clients call by their documented paths (BINTU-WIRE.md):

* ``POST /api/apikey {apikey}``: is this API key valid? (the 0.5 JS SDK's ``validateApiKey``; no
  credential header, the key is in the body). Answers 200 ``{key, created_at}`` with the key masked.
* ``POST /api/user/password {email}``: ask for a password reset link; always 200 with the same body.
  Same service, throttle and mail as ``POST /api/user/password/reset`` (which keeps answering 202).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import BackgroundTasks, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.api import login as authn_api
from streamward.audit.models import AuditEntry
from streamward.authn.principals import principal_from_api_key
from streamward.authn.schemas import PasswordResetRequest, PasswordResetRequested
from streamward.errors import error_body
from streamward.limits import RateLimitUnavailable
from streamward.orgs.models import Organisation, organisation_of
from streamward.runtime import client_address
from streamward.schemas import format_utc
from streamward.web.access import PUBLIC
from streamward.web.authenticate import MAX_CREDENTIAL_LENGTH
from streamward.web.params import RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes

router = Router(prefix="/api", tags=["bintu compatibility"])

# How much of a key an answer shows: enough to tell two keys apart, too little to use one.
MASK_VISIBLE = 6
MASK = "****"
# Every key rotation leaves this audit entry; the organisation has no column of its own for it.
API_KEY_ROTATED = "apikey.rotated"


def masked(api_key: str) -> str:
    return api_key[:MASK_VISIBLE] + MASK


class ApiKeyCheck(BaseModel):
    # Longer than any key we issue is still answered as "not valid", not as a validation error:
    # the SDK reads error.userinfo.apikey on every failure.
    apikey: str = Field(default="", max_length=4096)


class ApiKeyValid(BaseModel):
    """The SDK's field names as documented (snake_case ``created_at``, unlike the rest of the API)."""

    key: str = Field(description="The key, masked: its first characters and ****.")
    created_at: str = Field(description="When this key was issued (organisation creation or last rotation).")


def _refusal(
    status: int, code: str, message: str, api_key: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = error_body(code, message)
    body["error"]["userinfo"] = {"apikey": masked(api_key)}
    return JSONResponse(body, status_code=status, headers=headers)


async def api_key_issued_at(session: AsyncSession, organisation: Organisation) -> datetime:
    """When the organisation's current API key was made: its last rotation, else the organisation's
    creation (the first key is made with the organisation). Read from the audit log, which records
    every rotation in the rotating transaction, so no column has to be added for this."""
    rotated = await session.scalar(
        select(AuditEntry.created_at)
        .where(AuditEntry.organisation_id == organisation.id, AuditEntry.action == API_KEY_ROTATED)
        .order_by(AuditEntry.created_at.desc())
        .limit(1)
    )
    return rotated or organisation.created_at


@router.post(
    "/apikey",
    response_model=ApiKeyValid,
    dependencies=[PUBLIC],
    summary="Check an API key (bintu SDK validateApiKey): its masked form and issue time",
    responses={401: {"description": "Not a valid API key"}, 429: {"description": "Too many checks"}},
)
@reads  # a check only reads: it must not queue behind writers (SQLite's one write lock)
async def check_api_key(
    body: ApiKeyCheck, request: Request, db: DbSession, runtime: RuntimeDep
) -> ApiKeyValid | JSONResponse:
    address = client_address(request, trust_forwarded_for=runtime.settings.trust_forwarded_for)
    try:
        # Key checks per client address: as many as login attempts, in a budget of their own.
        wait = await runtime.apikey_checks.take(address)
    except RateLimitUnavailable as unavailable:
        return _refusal(503, unavailable.code, unavailable.message, body.apikey, headers=unavailable.headers)
    if wait:
        return _refusal(
            429,
            "rate_limited",
            f"Too many attempts; try again in {wait} s.",
            body.apikey,
            headers={"Retry-After": str(wait)},
        )
    if not body.apikey or len(body.apikey) > MAX_CREDENTIAL_LENGTH:
        return _refusal(401, "apikey_invalid", "This API key is not valid.", body.apikey)
    # Looked up by its SHA-256, like every API-key authentication: the key itself is never compared.
    principal = await principal_from_api_key(db, body.apikey)
    if principal is None:
        return _refusal(401, "apikey_invalid", "This API key is not valid.", body.apikey)
    issued_at = await api_key_issued_at(db, organisation_of(principal))
    return ApiKeyValid(key=masked(body.apikey), created_at=format_utc(issued_at))


@router.post(
    "/user/password",
    response_model=PasswordResetRequested,
    dependencies=[PUBLIC],
    summary="Mail a password reset link (bintu path); 200 whether or not the email has an account",
)
@writes
async def request_password_reset(
    body: PasswordResetRequest,
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    background: BackgroundTasks,
) -> PasswordResetRequested:
    # The same handler as POST /api/user/password/reset: one throttle, one mail, one answer; only
    # the status differs (bintu clients expect 200, that route documents 202).
    return await authn_api.request_password_reset(body, request, db, runtime, background)
