from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from streamward.authz.deps import require
from streamward.authz.principal import Principal
from streamward.config import Settings
from streamward.db import DbSession
from streamward.pagination import DEFAULT_LIMIT, MAX_LIMIT
from streamward.runtime import Runtime, get_runtime
from streamward.streams import service, tags
from streamward.streams.models import StreamState
from streamward.streams.schemas import (
    Ingest,
    PlayoutRendition,
    StreamCreate,
    StreamOut,
    StreamPage,
    StreamTagsUpdate,
    TagOut,
    TagPage,
    TagRename,
)
from streamward.streams.service import StreamAction, StreamView

router = APIRouter(prefix="/api/stream", tags=["streams"])
tag_router = APIRouter(prefix="/api/tag", tags=["tags"])

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=512)]


def stream_out(view: StreamView, settings: Settings) -> StreamOut:
    stream = view.stream
    return StreamOut(
        id=stream.id,
        name=stream.name,
        state=StreamState(stream.state),
        group_id=stream.group_id,
        transcodes=list(stream.transcodes),
        tags=view.tags,
        ingest=Ingest(rtmp_url=settings.ingest_rtmp_url, stream_name=stream.name),
        playout=[
            PlayoutRendition(rendition=r.name, stream_name=r.stream_name, url=r.url)
            for r in service.playout_of(settings, stream)
        ],
        created_at=stream.created_at,
        updated_at=stream.updated_at,
    )


@router.post("", response_model=StreamOut, status_code=201, summary="Create a stream")
async def create_stream(
    body: StreamCreate,
    principal: Annotated[Principal, require("stream:create")],
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> StreamOut:
    view = await service.create_stream(
        db, principal, tags=body.tags, transcodes=list(body.transcodes), group_id=body.group_id
    )
    return stream_out(view, runtime.settings)


@router.get("", response_model=StreamPage, summary="Streams, newest first; filter by tags, state, group")
async def list_streams(
    principal: Annotated[Principal, require("stream:read")],
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    tag: Annotated[
        list[str] | None,
        Query(max_length=20, description="Repeat for several: streams carrying all of them."),
    ] = None,
    state: Annotated[
        StreamState | None, Query(description="Deleted streams are listed only when asked for.")
    ] = None,
    group_id: Annotated[str | None, Query(alias="groupId", max_length=64)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> StreamPage:
    page = await service.list_streams(
        db, principal, tags=tag or [], state=state, group_id=group_id, limit=limit, cursor=cursor
    )
    return StreamPage(
        items=[stream_out(view, runtime.settings) for view in page.items], next_cursor=page.next_cursor
    )


@router.get("/{stream_id}", response_model=StreamOut, summary="One stream")
async def read_stream(
    stream_id: uuid.UUID,
    principal: Annotated[Principal, require("stream:read")],
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> StreamOut:
    return stream_out(await service.read_stream(db, principal, stream_id), runtime.settings)


@router.put("/{stream_id}/tag", response_model=StreamOut, summary="Replace the stream's tags")
async def set_stream_tags(
    stream_id: uuid.UUID,
    body: StreamTagsUpdate,
    principal: Annotated[Principal, require("tag:write")],
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> StreamOut:
    return stream_out(await service.set_stream_tags(db, principal, stream_id, body.tags), runtime.settings)


async def _act(
    stream_id: uuid.UUID, action: StreamAction, principal: Principal, db: DbSession, runtime: Runtime
) -> StreamOut:
    return stream_out(await service.act_on_stream(db, principal, stream_id, action), runtime.settings)


@router.post("/{stream_id}/stop", response_model=StreamOut, summary="End a live stream")
async def stop_stream(
    stream_id: uuid.UUID,
    principal: Annotated[Principal, require("stream:manage")],
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> StreamOut:
    return await _act(stream_id, StreamAction.STOP, principal, db, runtime)


@router.post(
    "/{stream_id}/lock", response_model=StreamOut, summary="Lock a stream: no publishing, no deleting"
)
async def lock_stream(
    stream_id: uuid.UUID,
    principal: Annotated[Principal, require("stream:manage")],
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> StreamOut:
    return await _act(stream_id, StreamAction.LOCK, principal, db, runtime)


@router.post("/{stream_id}/unlock", response_model=StreamOut, summary="Unlock a stream")
async def unlock_stream(
    stream_id: uuid.UUID,
    principal: Annotated[Principal, require("stream:manage")],
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> StreamOut:
    return await _act(stream_id, StreamAction.UNLOCK, principal, db, runtime)


@router.delete(
    "/{stream_id}", status_code=204, summary="Delete a stream (it keeps its record, state deleted)"
)
async def delete_stream(
    stream_id: uuid.UUID, principal: Annotated[Principal, require("stream:manage")], db: DbSession
) -> Response:
    await service.act_on_stream(db, principal, stream_id, StreamAction.DELETE)
    return Response(status_code=204)


@tag_router.get("", response_model=TagPage, summary="Tags in use, by name, with their stream counts")
async def list_tags(
    principal: Annotated[Principal, require("tag:read")],
    db: DbSession,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> TagPage:
    page = await tags.list_tags(db, principal, limit=limit, cursor=cursor)
    return TagPage(
        items=[TagOut(name=t.name, streams=t.streams) for t in page.items], next_cursor=page.next_cursor
    )


# `:path`: a tag may contain "/" (sent percent-encoded or not).
@tag_router.put("/{name:path}", response_model=TagOut, summary="Rename a tag on every stream")
async def rename_tag(
    name: str, body: TagRename, principal: Annotated[Principal, require("tag:write")], db: DbSession
) -> TagOut:
    renamed = await tags.rename_tag(db, principal, name, body.name)
    return TagOut(name=renamed.name, streams=renamed.streams)


@tag_router.delete("/{name:path}", status_code=204, summary="Take a tag off every stream")
async def delete_tag(
    name: str, principal: Annotated[Principal, require("tag:delete")], db: DbSession
) -> Response:
    await tags.delete_tag(db, principal, name)
    return Response(status_code=204)
