from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request, Response

from streamward.authz.principal import Principal
from streamward.errors import Unauthenticated
from streamward.orgs.models import Organisation, organisation_of
from streamward.pagination import DEFAULT_LIMIT
from streamward.vod import service
from streamward.vod.models import VodAsset
from streamward.vod.schemas import VodAssetOut, VodImport, VodPage
from streamward.vod.service import VodReader
from streamward.web.access import access_rule, require
from streamward.web.authenticate import API_KEY_HEADER, TOKEN_HEADER, authenticate
from streamward.web.params import Cursor, Limit
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes

router = Router(prefix="/api/vod", tags=["vod"])


@access_rule("vod-visibility")
async def vod_reader(request: Request, db: DbSession) -> VodReader:
    """Public when the organisation's VOD is public, ``vod:read`` otherwise (see vod.service.visibility).

    The organisation is the asset's (``/api/vod/{asset_id}``), else ``?organisation=``, else the
    caller's own. Credentials are optional, but credentials that are sent must be valid.
    """
    principal: Principal | None = None
    if request.headers.get(TOKEN_HEADER) or request.headers.get(API_KEY_HEADER):
        principal = await authenticate(request)
    asset_id = request.path_params.get("asset_id")
    named = request.query_params.get("organisation")
    organisation: Organisation | None
    if asset_id is not None:
        organisation = await service.owner_of_asset(db, asset_id)
    elif named:
        try:
            organisation = await db.get(Organisation, uuid.UUID(named))
        except ValueError:
            organisation = None
    elif principal is not None:
        organisation = organisation_of(principal)
    else:
        raise Unauthenticated(
            "Send credentials, or name an organisation whose VOD is public (?organisation=<id>)."
        )
    return service.visibility(organisation, principal)


VOD_READER = Depends(vod_reader)


def asset_out(asset: VodAsset) -> VodAssetOut:
    return VodAssetOut.model_validate(asset)


@router.get("", response_model=VodPage, summary="VOD assets of an organisation, newest first")
@reads
async def list_assets(
    reader: Annotated[VodReader, VOD_READER],
    db: DbSession,
    # Read by vod_reader (which decides access before this is validated); declared here so that it
    # is validated and documented.
    organisation: Annotated[
        uuid.UUID | None,
        Query(description="Whose VOD; needed without credentials. Defaults to the caller's organisation."),
    ] = None,
    stream_id: Annotated[uuid.UUID | None, Query(alias="streamId")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> VodPage:
    page = await service.list_assets(db, reader, stream_id=stream_id, limit=limit, cursor=cursor)
    return VodPage(items=[asset_out(a) for a in page.items], next_cursor=page.next_cursor)


@router.get("/{asset_id}", response_model=VodAssetOut, summary="One VOD asset")
@reads
async def read_asset(
    asset_id: uuid.UUID, reader: Annotated[VodReader, VOD_READER], db: DbSession
) -> VodAssetOut:
    return asset_out(await service.read_asset(db, reader, asset_id))


@router.post("", response_model=VodAssetOut, status_code=201, summary="Import a VOD asset")
@writes
async def import_asset(
    body: VodImport, principal: Annotated[Principal, require("stream:manage")], db: DbSession
) -> VodAssetOut:
    asset = await service.import_asset(
        db,
        principal,
        stream_id=body.stream_id,
        title=body.title,
        duration_seconds=body.duration_seconds,
        url=body.url,
    )
    return asset_out(asset)


@router.delete("/{asset_id}", status_code=204, summary="Delete a VOD asset")
@writes
async def delete_asset(
    asset_id: uuid.UUID, principal: Annotated[Principal, require("stream:manage")], db: DbSession
) -> Response:
    await service.delete_asset(db, principal, asset_id)
    return Response(status_code=204)
