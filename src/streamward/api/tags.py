"""The tags in use across an organisation's streams: listed with their counts, renamed or taken off
every stream at once (``/api/tag``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Response

from streamward.authz.principal import Principal
from streamward.pagination import DEFAULT_LIMIT
from streamward.streams import tags
from streamward.streams.schemas import (
    TagOut,
    TagPage,
    TagRename,
)
from streamward.web.access import require
from streamward.web.params import Cursor, Limit
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes

tag_router = Router(prefix="/api/tag", tags=["tags"])


@tag_router.get("", response_model=TagPage, summary="Tags in use, by name, with their stream counts")
@reads
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
@writes
async def rename_tag(
    name: str, body: TagRename, principal: Annotated[Principal, require("tag:write")], db: DbSession
) -> TagOut:
    renamed = await tags.rename_tag(db, principal, name, body.name)
    return TagOut(name=renamed.name, streams=renamed.streams)


@tag_router.delete("/{name:path}", status_code=204, summary="Take a tag off every stream")
@writes
async def delete_tag(
    name: str, principal: Annotated[Principal, require("tag:delete")], db: DbSession
) -> Response:
    await tags.delete_tag(db, principal, name)
    return Response(status_code=204)
