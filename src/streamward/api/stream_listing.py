"""The bintu stream listings (``GET /stream`` and ``GET /stream/public``): the filters they share,
declared once, and their answer, a bare JSON array (what bintu clients read) with the next page
announced in an RFC 8288 ``Link`` header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query, Request, Response
from pydantic import Field

from streamward.api.stream_readers import (
    StreamReader,
    playable_for_token,
    present_listed,
    private_answer,
    public_answer,
    serialised,
    shows_recordings,
    with_recordings,
)
from streamward.db import LookupSource
from streamward.errors import BadRequest, Unauthenticated
from streamward.pagination import DEFAULT_LIMIT, MAX_LIMIT
from streamward.runtime import Runtime
from streamward.schemas import column_length
from streamward.streams import service
from streamward.streams.models import Stream, StreamState
from streamward.streams.playout import Addresses
from streamward.web.params import PageCursor
from streamward.web.query import QueryModel
from streamward.web.session import request_session

# Declared once for a single stream's read (FastAPI parameters) and the listings' query models.
DEFAULT_ASSET_LIMIT = 10
MAX_ASSET_LIMIT = 100
ASSET_LIMIT_DESCRIPTION = f"Recorded assets listed per stream in playout.web (default {DEFAULT_ASSET_LIMIT})."
PROFILE_LENGTH = 16
PROFILE_DESCRIPTION = "`player`: the player profile."
AssetLimit = Annotated[int, Query(ge=0, le=MAX_ASSET_LIMIT, description=ASSET_LIMIT_DESCRIPTION)]
Profile = Annotated[str | None, Query(max_length=PROFILE_LENGTH, description=PROFILE_DESCRIPTION)]
_LINK = {
    "description": 'RFC 8288: `<...>; rel="next"`, the same request with the next '
    "page's cursor; absent on the last page.",
    "schema": {"type": "string"},
}
# Public player reads (no credentials; an organisation that requires no playback token): at most a
# second old, revalidated with If-None-Match. Answers to credentials keep `no-store`.
_PLAYER_CACHE_HEADERS = {
    "ETag": {"description": "Strong tag of a public player answer.", "schema": {"type": "string"}},
    "Cache-Control": {
        "description": "`public, max-age=1` on public player answers; `private, no-store` when the "
        "organisation requires a playback token; `no-store` with credentials.",
        "schema": {"type": "string"},
    },
}
_NOT_MODIFIED = {"description": "Not Modified: If-None-Match names the current ETag (public player answers)."}
PLAYER_READ = {200: {"headers": _PLAYER_CACHE_HEADERS}, 304: _NOT_MODIFIED}
PAGED_PLAYER_READ = {200: {"headers": {"Link": _LINK, **_PLAYER_CACHE_HEADERS}}, 304: _NOT_MODIFIED}


def json_response(content: Any, *, headers: dict[str, str] | None = None) -> Response:
    """200 with ``content`` serialised as it is (already in its wire shape; bytes: its JSON)."""
    return Response(serialised(content), media_type="application/json", headers=headers)


def next_link(request: Request, cursor: str | None) -> dict[str, str] | None:
    """RFC 8288 paging that leaves the body a bare array: the same request with the next cursor."""
    if cursor is None:
        return None
    url = request.url.include_query_params(cursor=cursor)
    target = url.path + ("?" + url.query if url.query else "")
    return {"Link": f'<{target}>; rel="next"'}


@dataclass(frozen=True)
class StreamFilters:
    tags: list[str]  # all of them; blanks dropped
    state: StreamState | None
    limit: int
    cursor: str | None
    asset_limit: int


class StreamFiltersQuery(QueryModel):
    """The query parameters both listings take (read in one validation: ``web.query``)."""

    tags_brackets: list[str] | None = Field(
        None,
        alias="tags[]",
        max_length=20,
        description="bintu's filter, repeated: streams carrying all of them.",
    )
    tag: list[str] | None = Field(None, max_length=20, description="Same as tags[].")
    state: StreamState | None = Field(None, description="Deleted streams are listed only when asked for.")
    quantity: int = Field(
        DEFAULT_LIMIT, ge=1, description=f"How many streams (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})."
    )
    cursor: PageCursor = None
    asset_limit: int = Field(
        DEFAULT_ASSET_LIMIT, ge=0, le=MAX_ASSET_LIMIT, description=ASSET_LIMIT_DESCRIPTION
    )

    def filters(self) -> StreamFilters:
        tags = [t.strip() for t in (self.tags_brackets or []) + (self.tag or []) if t.strip()]
        return StreamFilters(tags, self.state, min(self.quantity, MAX_LIMIT), self.cursor, self.asset_limit)


class StreamListQuery(StreamFiltersQuery):
    """``GET /stream``'s: the shared filters, a stream group and the profile."""

    group_id: str | None = Field(None, alias="groupId", max_length=column_length(Stream.group_id))
    profile: str | None = Field(None, max_length=PROFILE_LENGTH, description=PROFILE_DESCRIPTION)


async def listing(
    request: Request,
    reader: StreamReader,
    db: LookupSource,
    runtime: Runtime,
    filters: StreamFilters,
    *,
    group_id: str | None,
    profile: str | None,
) -> Response:
    """One page of the reader's streams, newest first, each as the reader may see it. The page is
    read from ``db`` (on PostgreSQL the look-up pool); what only some readers get (a playback token's
    streams, recordings) from the request's session."""
    tenant = reader.tenant
    if tenant is None:
        raise Unauthenticated(
            "Send credentials (X-BINTU-APIKEY, X-BINTU-TOKEN) or the player key (X-BINTU-PLAYERKEY)."
        )
    if reader.is_player and "tags[]" not in request.query_params and "tag" not in request.query_params:
        raise BadRequest(
            "A player-key listing needs tags: send tags[]=<tag> (tags[]= for every stream).",
            code="tags_required",
        )
    page = await service.list_streams(
        db,
        tenant,
        tags=filters.tags,
        state=filters.state,
        group_id=group_id,
        limit=filters.limit,
        cursor=filters.cursor,
        playable_only=reader.is_player,
    )
    views = list(page.items)
    if reader.player_organisation is not None:
        allowed = await playable_for_token(
            db,
            reader,
            reader.player_organisation,
            [v.stream for v in views],
            issuer=runtime.settings.base_url,
        )
        views = [v for v in views if v.stream in allowed]
    if shows_recordings(reader, views):
        views = await with_recordings(await request_session(request), reader, views, filters.asset_limit)
    body = present_listed(views, reader, Addresses.of(runtime.settings), profile)
    link = next_link(request, page.next_cursor)
    organisation = reader.player_organisation
    if organisation is None:
        return json_response(body, headers=link)
    if organisation.player_token_required:
        return private_answer(request, runtime, organisation.id, body, link)
    return public_answer(request, runtime, organisation.id, body, link)
