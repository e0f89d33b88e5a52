from __future__ import annotations

import uuid
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Response
from pydantic import TypeAdapter

from streamward.authn import service as authn
from streamward.authn.schemas import BintuTokenCreate, BintuTokenOut
from streamward.authz.principal import Principal
from streamward.orgs import packages, service
from streamward.orgs.models import organisation_of
from streamward.orgs.schemas import (
    ApiKeyOut,
    Confirmation,
    MfaPolicy,
    OrganisationOut,
    PackageState,
    PlayerKeyOut,
    VodSettings,
    WebhookOut,
    WebhookSaved,
    WebhookSecretOut,
    WebhookUpdate,
)
from streamward.web.access import require
from streamward.web.params import RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes
from streamward.webhooks import config as webhook

_PACKAGE_STATES = TypeAdapter(list[PackageState])


@lru_cache(maxsize=256)
def _package_states(enabled: tuple[str, ...]) -> list[PackageState]:
    """The seven packages' states for one choice of enabled packages: built and validated once per
    choice (few exist), not on every organisation read, the hot path. Read-only by convention."""
    return _PACKAGE_STATES.validate_python(packages.describe(list(enabled)))


router = Router(prefix="/api/organisation", tags=["organisation"])
bintu_token_router = Router(prefix="/api/bintu", tags=["authentication"])


@router.get("", response_model=OrganisationOut, summary="The caller's organisation")
@reads
async def read_organisation(principal: Annotated[Principal, require("org:read")]) -> Response:
    # Loaded with the credential in one query; nothing more to fetch.
    org = organisation_of(principal)
    body = _organisation_json(
        org.id,
        org.name,
        org.support_level,
        org.analytics_level,
        org.trial,
        tuple(org.packages),
        org.webhook_url,
        org.vod_public,
        org.created_at,
    )
    return Response(body, media_type="application/json")


@lru_cache(maxsize=1024)
def _organisation_json(
    id: uuid.UUID,
    name: str,
    support_level: str,
    analytics_level: str,
    trial: bool,
    enabled: tuple[str, ...],
    webhook: str | None,
    vod_public: bool,
    created_at: datetime,
) -> bytes:
    """OrganisationOut's JSON for these values, kept by all of them (any change is another key): the
    hot path's answer was built and serialised again on every read, about a sixth of its CPU."""
    shown = OrganisationOut(
        id=id,
        name=name,
        support_level=support_level,
        analytics_level=analytics_level,
        trial=trial,
        packages=_package_states(enabled),
        webhook=webhook,
        vod_public=vod_public,
        created_at=created_at,
    )
    return OrganisationOut.__pydantic_serializer__.to_json(shown, by_alias=True)


@router.get("/apikey", response_model=ApiKeyOut, summary="Reveal the API key (audited)")
@writes  # the reveal is audited
async def reveal_api_key(
    principal: Annotated[Principal, require("apikey:read")],
    db: DbSession,
    runtime: RuntimeDep,
) -> ApiKeyOut:
    return ApiKeyOut(api_key=await service.reveal_api_key_audited(db, runtime.secret_box, principal))


@router.post(
    "/apikey/rotate",
    response_model=ApiKeyOut,
    summary="Replace the API key; the old one stops at once",
)
@writes
async def rotate_api_key(
    _: Confirmation,
    principal: Annotated[Principal, require("apikey:rotate")],
    db: DbSession,
    runtime: RuntimeDep,
) -> ApiKeyOut:
    return ApiKeyOut(api_key=await service.rotate_api_key(db, runtime.secret_box, principal))


@router.get("/playerkey", response_model=PlayerKeyOut, summary="The player key")
@reads
async def read_player_key(principal: Annotated[Principal, require("playerkey:read")]) -> PlayerKeyOut:
    return PlayerKeyOut(player_key=organisation_of(principal).player_key)


@router.post(
    "/playerkey/rotate",
    response_model=PlayerKeyOut,
    summary="Replace the player key; players embedding the old one stop at once",
)
@writes
async def rotate_player_key(
    _: Confirmation, principal: Annotated[Principal, require("playerkey:rotate")], db: DbSession
) -> PlayerKeyOut:
    return PlayerKeyOut(player_key=await service.rotate_player_key(db, principal))


def _webhook_fields(config: webhook.WebhookConfig) -> dict[str, Any]:
    return {
        "webhook": config.url,
        "events": config.events,
        "has_secret": config.has_secret,
        "disabled_at": config.disabled_at,
    }


@router.get("/webhook", response_model=WebhookOut, summary="The webhook config (never the secret)")
@reads
async def read_webhook(principal: Annotated[Principal, require("webhook:read")]) -> WebhookOut:
    return WebhookOut(**_webhook_fields(webhook.config_of(organisation_of(principal))))


@router.put(
    "/webhook",
    response_model=WebhookSaved,
    summary="Set the webhook; the signing secret is returned once, when first created",
)
@writes
async def save_webhook(
    body: WebhookUpdate,
    principal: Annotated[Principal, require("webhook:write")],
    db: DbSession,
    runtime: RuntimeDep,
) -> WebhookSaved:
    saved = await webhook.save(
        db,
        runtime.secret_box,
        principal,
        url=body.webhook,
        events=body.events,
        allow_private=runtime.settings.allow_private_webhook_targets,
        resolver=runtime.webhook_resolver,
    )
    return WebhookSaved(**_webhook_fields(saved.config), secret=saved.new_secret)


@router.post(
    "/webhook/secret/rotate",
    response_model=WebhookSecretOut,
    summary="Replace the webhook signing secret (shown once)",
)
@writes
async def rotate_webhook_secret(
    _: Confirmation,
    principal: Annotated[Principal, require("webhook:write")],
    db: DbSession,
    runtime: RuntimeDep,
) -> WebhookSecretOut:
    return WebhookSecretOut(secret=await webhook.rotate_secret(db, runtime.secret_box, principal))


@router.delete("/webhook", status_code=204, summary="Remove the webhook and its secret")
@writes
async def delete_webhook(
    principal: Annotated[Principal, require("webhook:write")], db: DbSession
) -> Response:
    await webhook.remove(db, principal)
    return Response(status_code=204)


@router.put("/vod", response_model=VodSettings, summary="Make the organisation's VOD public or private")
@writes
async def set_vod_visibility(
    body: VodSettings, principal: Annotated[Principal, require("vod:settings")], db: DbSession
) -> VodSettings:
    return VodSettings(public=await service.set_vod_public(db, principal, body.public))


@router.get("/mfa-policy", response_model=MfaPolicy, summary="Whether every member needs a second factor")
@reads
async def read_mfa_policy(principal: Annotated[Principal, require("org:read")]) -> MfaPolicy:
    return MfaPolicy(required=organisation_of(principal).mfa_required)


@router.put(
    "/mfa-policy",
    response_model=MfaPolicy,
    summary="Require a second factor of every member (or stop requiring it)",
    description="Members without one then reach only enrolment and logout, from their next request. "
    "The API key and playback tokens are not affected.",
)
@writes
async def set_mfa_policy(
    body: MfaPolicy, principal: Annotated[Principal, require("org:mfa_policy")], db: DbSession
) -> MfaPolicy:
    return MfaPolicy(required=await service.set_mfa_required(db, principal, body.required))


@bintu_token_router.post(
    "/token",
    response_model=BintuTokenOut,
    status_code=201,
    summary="A named long-lived bintu token of the caller, for automation (shown once)",
)
@writes
async def create_bintu_token(
    body: BintuTokenCreate, principal: Annotated[Principal, require("apikey:read")], db: DbSession
) -> BintuTokenOut:
    issued = await authn.create_named_token(
        db, principal, name=body.name, expires_in_days=body.expires_in_days
    )
    return BintuTokenOut(token=issued.token, name=body.name, expires_at=issued.session.expires_at)
