"""VOD assets: imports through the API, recordings from streams, and who may read them.

Reading follows the organisation's *VOD public accessibility*: a public organisation's assets can be
read by anyone, without credentials; a private organisation's only by its members holding
``vod:read`` (to everyone else they do not exist: 404). The rule itself is ``visibility``; the
``vod-visibility`` access rule in api.py applies it to the caller of a request.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped, scoped
from streamward.errors import Forbidden, NotFound
from streamward.orgs.models import Organisation, organisation_of
from streamward.orgs.packages import require_package
from streamward.pagination import Page, keyset_page
from streamward.streams.models import Stream
from streamward.vod.models import VodAsset


@dataclass(frozen=True)
class VodReader:
    """A caller allowed to read one organisation's VOD; ``principal`` is None for a public read."""

    organisation: Organisation
    principal: Principal | None

    @property
    def organisation_id(self) -> uuid.UUID:
        return self.organisation.id


def visibility(organisation: Organisation | None, principal: Principal | None) -> VodReader:
    """Who may read ``organisation``'s VOD: anyone when it is public, otherwise its members with
    ``vod:read``. Strangers (no credentials, or another organisation's) are told it does not exist."""
    if organisation is None:
        raise NotFound("No such VOD.")
    if organisation.vod_public:
        return VodReader(organisation, principal)
    if principal is None or principal.organisation_id != organisation.id:
        raise NotFound("No such VOD.")
    if not principal.can("vod:read"):
        raise Forbidden("Your role does not allow this (See VOD assets).", details={"permission": "vod:read"})
    return VodReader(organisation, principal)


async def owner_of_asset(session: AsyncSession, asset_id: str) -> Organisation | None:
    """The organisation an asset belongs to, looked up before we know who may see it."""
    try:
        key = uuid.UUID(asset_id)
    except ValueError:
        return None
    statement = select(Organisation).join(VodAsset, VodAsset.organisation_id == Organisation.id)
    return (await session.execute(statement.where(VodAsset.id == key))).scalar_one_or_none()


async def list_assets(
    session: AsyncSession,
    reader: VodReader,
    *,
    stream_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> Page[VodAsset]:
    require_package(reader.organisation.packages, "vod")
    statement = scoped(select(VodAsset), VodAsset, reader)
    if stream_id is not None:
        statement = statement.where(VodAsset.stream_id == stream_id)
    return await keyset_page(session, statement, VodAsset.id, limit=limit, cursor=cursor)


async def read_asset(session: AsyncSession, reader: VodReader, asset_id: uuid.UUID) -> VodAsset:
    require_package(reader.organisation.packages, "vod")
    return await get_scoped(session, VodAsset, asset_id, reader, what="VOD")


def _audit_created(session: AsyncSession, actor: Actor, asset: VodAsset) -> None:
    record(
        session,
        actor,
        "vod.created",
        organisation_id=asset.organisation_id,
        target_type="vod",
        target_id=asset.id,
        after={
            "title": asset.title,
            "streamId": str(asset.stream_id) if asset.stream_id else None,
            "source": asset.source,
        },
    )


async def import_asset(
    session: AsyncSession,
    principal: Principal,
    *,
    stream_id: uuid.UUID | None,
    title: str,
    duration_seconds: float,
    url: str,
) -> VodAsset:
    require_package(organisation_of(principal).packages, "vod")
    if stream_id is not None:
        await get_scoped(session, Stream, stream_id, principal, what="stream")
    asset = VodAsset(
        organisation_id=principal.organisation_id,
        stream_id=stream_id,
        title=title,
        duration_seconds=duration_seconds,
        url=url,
        source="import",
    )
    session.add(asset)
    await session.flush()
    _audit_created(session, Actor.of(principal), asset)
    return asset


async def create_recording(
    session: AsyncSession,
    organisation: Organisation,
    stream: Stream,
    *,
    title: str,
    duration_seconds: float,
    url: str,
    actor: Actor,
) -> VodAsset:
    """A recording of ``stream`` becomes a VOD asset (called when a media server reports one).
    Needs the Recording feature of Live Processing (`live_processing.recording`)."""
    if stream.organisation_id != organisation.id:
        raise ValueError("the stream belongs to another organisation")
    require_package(organisation.packages, "live_processing.recording")
    asset = VodAsset(
        organisation_id=organisation.id,
        stream_id=stream.id,
        title=title,
        duration_seconds=duration_seconds,
        url=url,
        source="recording",
    )
    session.add(asset)
    await session.flush()
    _audit_created(session, actor, asset)
    return asset


async def delete_asset(session: AsyncSession, principal: Principal, asset_id: uuid.UUID) -> None:
    # Looked up first: another organisation's asset is 404 whatever our packages are.
    asset = await get_scoped(session, VodAsset, asset_id, principal, what="VOD")
    require_package(organisation_of(principal).packages, "vod")
    record(
        session,
        Actor.of(principal),
        "vod.deleted",
        organisation_id=principal.organisation_id,
        target_type="vod",
        target_id=asset.id,
        before={"title": asset.title},
    )
    await session.delete(asset)
    await session.flush()


async def recorded_assets(
    session: AsyncSession, organisation_id: uuid.UUID, stream_ids: Sequence[uuid.UUID], *, per_stream: int
) -> dict[uuid.UUID, list[VodAsset]]:
    """The newest ``per_stream`` VOD assets of each stream (bintu's ``asset_limit``), in one query."""
    found: dict[uuid.UUID, list[VodAsset]] = {stream_id: [] for stream_id in stream_ids}
    if not stream_ids or per_stream < 1:
        return found
    rank = func.row_number().over(partition_by=VodAsset.stream_id, order_by=VodAsset.id.desc()).label("rank")
    ranked = (
        select(VodAsset.id, rank)
        .where(VodAsset.organisation_id == organisation_id, VodAsset.stream_id.in_(stream_ids))
        .subquery()
    )
    assets = await session.execute(
        select(VodAsset)
        .join(ranked, ranked.c.id == VodAsset.id)
        .where(ranked.c.rank <= per_stream)
        .order_by(VodAsset.id.desc())
    )
    for asset in assets.scalars():
        if asset.stream_id is not None:
            found[asset.stream_id].append(asset)
    return found
