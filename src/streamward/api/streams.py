"""The bintu stream API (BINTU-WIRE.md): every success is 200 with a JSON body, lists are bare
arrays paged by an RFC 8288 ``Link: <...>; rel="next"`` header (stream_listing.py), and the read
paths follow the ``player`` access rule (stream_readers.py). What players read without credentials
is public and answered from the player-read cache when it holds it (``StreamRoute``, before the
access rule and the session). Stream objects are built as dicts (streams/playout.py) and sent as
they are; the response models document them and the tests hold them to it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Body, Request, Response

from streamward.api.stream_listing import (
    DEFAULT_ASSET_LIMIT,
    PAGED_PLAYER_READ,
    PLAYER_READ,
    AssetLimit,
    Profile,
    StreamFiltersQuery,
    StreamListQuery,
    json_response,
    listing,
)
from streamward.api.stream_readers import (
    PLAYER_PROFILE,
    STREAM_READER,
    StreamReader,
    cached_or_read,
    check_player_read,
    playable_for_token,
    present,
    private_answer,
    public_answer,
    with_recordings,
)
from streamward.authz.principal import Principal
from streamward.errors import NotFound
from streamward.orgs.models import organisation_of
from streamward.orgs.packages import has_package
from streamward.orgs.player_access import set_player_token_required
from streamward.runtime import Runtime
from streamward.streams import push, service
from streamward.streams.lifecycle import StreamAction
from streamward.streams.playout import Addresses, group_object, stream_object
from streamward.streams.schemas import (
    PlayerAccess,
    PlayerAccessOut,
    PlayerStreamOut,
    PushUrlUpdate,
    StreamCreate,
    StreamGroupOut,
    StreamOut,
    StreamTagsUpdate,
)
from streamward.streams.service import StreamView
from streamward.web.access import require
from streamward.web.params import RuntimeDep
from streamward.web.query import query_model
from streamward.web.routing import Route, Router
from streamward.web.session import DbSession, LookupDb, reads, writes

Endpoint = Callable[..., Awaitable[Response]]
PLAYER_READ_ATTRIBUTE = "streamward_player_read"


def player_read(kind: str) -> Callable[[Endpoint], Endpoint]:
    """The route is a public player read (``stream``, ``group`` or ``list``): answered from the
    player-read cache when it holds the answer (see stream_readers.cached_or_read)."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, PLAYER_READ_ATTRIBUTE, kind)
        return endpoint

    return mark


class StreamRoute(Route):
    """A stream route. The player reads among them look in the cache before anything else runs:
    a cached public answer needs neither the access rule nor a database session."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        kind: str | None = getattr(self.endpoint, PLAYER_READ_ATTRIBUTE, None)
        if kind is None:
            return handler

        async def player_read_handler(request: Request) -> Response:
            return await cached_or_read(kind, request, handler)

        return player_read_handler


stream_routes = Router(prefix="/api/stream", tags=["streams"], route_class=StreamRoute)
player_access_routes = Router(prefix="/api/organisation/player-access", tags=["organisation"])

# Whoever may act on a stream's lifecycle and restream target.
StreamManager = Annotated[Principal, require("stream:manage")]


def _full(view: StreamView, principal: Principal, runtime: Runtime) -> Response:
    shown = stream_object(view, Addresses.of(runtime.settings), show_push_url=principal.can("stream:manage"))
    return json_response(shown)


@stream_routes.post(
    "",
    response_model=StreamOut,
    summary="Create a stream (200, the stream object)",
    response_description="The stream",
)
@writes
async def create_stream(
    principal: Annotated[Principal, require("stream:create")],
    db: DbSession,
    runtime: RuntimeDep,
    body: Annotated[StreamCreate | None, Body()] = None,
) -> Response:
    body = body or StreamCreate()
    view = await service.create_stream(
        db,
        principal,
        tags=body.tags,
        transcodes=body.transcode_requests(),
        group_id=body.group_id,
        stream_type=body.type,
    )
    return _full(view, principal, runtime)


@stream_routes.get(
    "",
    response_model=list[StreamOut | PlayerStreamOut],
    responses=PAGED_PLAYER_READ,  # type: ignore[arg-type]
    summary="Streams, newest first, as a bare array; next page in the Link header",
    description="With credentials: stream objects. With the player key (X-BINTU-PLAYERKEY, tags "
    "required): the player profile of the organisation's playable streams.",
)
@player_read("list")
@reads
async def list_streams(
    request: Request,
    reader: Annotated[StreamReader, STREAM_READER],
    db: LookupDb,
    runtime: RuntimeDep,
    query: Annotated[StreamListQuery, query_model(StreamListQuery)],
) -> Response:
    return await listing(
        request, reader, db, runtime, query.filters(), group_id=query.group_id, profile=query.profile
    )


@stream_routes.get(
    "/public",
    response_model=list[PlayerStreamOut],
    responses=PAGED_PLAYER_READ,  # type: ignore[arg-type]
    summary="Player-key listing: the player profile of the organisation's playable streams",
)
@player_read("list")
@reads
async def list_public_streams(
    request: Request,
    reader: Annotated[StreamReader, STREAM_READER],
    db: LookupDb,
    runtime: RuntimeDep,
    query: Annotated[StreamFiltersQuery, query_model(StreamFiltersQuery)],
) -> Response:
    return await listing(request, reader, db, runtime, query.filters(), group_id=None, profile=PLAYER_PROFILE)


@stream_routes.get(
    "/{stream_id}",
    response_model=StreamOut | PlayerStreamOut,
    responses=PLAYER_READ,  # type: ignore[arg-type]
    summary="One stream; without credentials (or with ?profile=player) its player profile",
)
@player_read("stream")
@reads
async def read_stream(
    request: Request,
    stream_id: str,
    reader: Annotated[StreamReader, STREAM_READER],
    db: DbSession,
    runtime: RuntimeDep,
    profile: Profile = None,
    asset_limit: AssetLimit = DEFAULT_ASSET_LIMIT,
) -> Response:
    addresses = Addresses.of(runtime.settings)
    if reader.principal is not None:
        view = await service.read_stream(db, reader.principal, stream_id)
        (view,) = await with_recordings(db, reader, [view], asset_limit)
        return json_response(present(view, reader, addresses, profile))
    stream, organisation = await service.find_for_player(db, stream_id)
    if reader.player_organisation is not None and reader.player_organisation.id != organisation.id:
        raise NotFound("No such stream.")
    await check_player_read(db, reader, organisation, stream, issuer=runtime.settings.base_url)
    player = StreamReader(player_organisation=organisation)  # VOD visibility: the stream's organisation
    (view,) = await with_recordings(db, player, [StreamView(stream, [])], asset_limit)
    content = present(view, player, addresses, profile)
    if organisation.player_token_required:
        return private_answer(request, runtime, organisation.id, content)
    return public_answer(request, runtime, organisation.id, content)


@stream_routes.get(
    "/{stream_id}/group",
    response_model=StreamGroupOut,
    responses=PLAYER_READ,  # type: ignore[arg-type]
    summary="The stream group: every rendition in playout.h5live, with playout.hls at the same index",
    description="`stream_id` is a stream id or a stream name; with credentials or the player key "
    "also a group id of the organisation.",
)
@player_read("group")
@reads
async def read_stream_group(
    request: Request,
    stream_id: str,
    reader: Annotated[StreamReader, STREAM_READER],
    db: DbSession,
    runtime: RuntimeDep,
    profile: Profile = None,
) -> Response:
    head, organisation = await service.find_group_head(
        db, stream_id, tenant=reader.tenant, playable_only=reader.is_player
    )
    await check_player_read(db, reader, organisation, head, issuer=runtime.settings.base_url)
    members = await service.group_members(db, head)
    # A token for one stream of the group plays that stream, not its siblings.
    members = await playable_for_token(db, reader, organisation, members, issuer=runtime.settings.base_url)
    content = group_object(members, Addresses.of(runtime.settings))
    if not reader.is_player:
        return json_response(content)
    if organisation.player_token_required:
        return private_answer(request, runtime, organisation.id, content)
    return public_answer(request, runtime, organisation.id, content)


@stream_routes.put("/{stream_id}/tag", response_model=StreamOut, summary="Replace the stream's tags")
@writes
async def set_stream_tags(
    stream_id: str,
    principal: Annotated[Principal, require("tag:write")],
    db: DbSession,
    runtime: RuntimeDep,
    body: Annotated[StreamTagsUpdate | None, Body()] = None,
) -> Response:
    # SDKs send no body at all to clear the tags.
    new_tags = body.tags if body is not None else []
    return _full(await service.set_stream_tags(db, principal, stream_id, new_tags), principal, runtime)


@stream_routes.put(
    "/{stream_id}/push_url",
    response_model=StreamOut,
    summary="Set the restream target (rtmp/rtmps, public hosts only); null or empty removes it",
)
@writes
async def set_push_url(
    stream_id: str,
    body: PushUrlUpdate,
    principal: StreamManager,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    view = await push.set_push_url(
        db,
        principal,
        stream_id,
        body.url.strip() if body.url and body.url.strip() else None,
        allow_private=runtime.settings.allow_private_webhook_targets,
        resolver=runtime.webhook_resolver,
    )
    return _full(view, principal, runtime)


async def _act(
    stream_id: str, action: StreamAction, principal: Principal, db: DbSession, runtime: Runtime
) -> Response:
    return _full(await service.act_on_stream(db, principal, stream_id, action), principal, runtime)


def lifecycle_route(path: str, summary: str) -> Callable[[Endpoint], Endpoint]:
    """bintu clients PUT the lifecycle actions; the first Streamward API POSTed them: both work
    (POST documented as deprecated)."""

    def register(endpoint: Endpoint) -> Endpoint:
        writes(endpoint)
        stream_routes.put(path, response_model=StreamOut, summary=summary)(endpoint)
        stream_routes.post(
            path,
            response_model=StreamOut,
            summary=f"{summary} (POST: as PUT)",
            operation_id=f"{endpoint.__name__}_post",
            deprecated=True,
        )(endpoint)
        return endpoint

    return register


@lifecycle_route("/{stream_id}/stop", "End a live stream")
async def stop_stream(
    stream_id: str, principal: StreamManager, db: DbSession, runtime: RuntimeDep
) -> Response:
    return await _act(stream_id, StreamAction.STOP, principal, db, runtime)


@lifecycle_route("/{stream_id}/lock", "Lock a stream: no publishing, no deleting")
async def lock_stream(
    stream_id: str, principal: StreamManager, db: DbSession, runtime: RuntimeDep
) -> Response:
    return await _act(stream_id, StreamAction.LOCK, principal, db, runtime)


@lifecycle_route("/{stream_id}/unlock", "Unlock a stream")
async def unlock_stream(
    stream_id: str, principal: StreamManager, db: DbSession, runtime: RuntimeDep
) -> Response:
    return await _act(stream_id, StreamAction.UNLOCK, principal, db, runtime)


@stream_routes.delete(
    "/{stream_id}",
    response_model=StreamOut,
    summary="Delete a stream: 200 with the stream, state deleted (the record stays)",
)
@writes
async def delete_stream(
    stream_id: str, principal: StreamManager, db: DbSession, runtime: RuntimeDep
) -> Response:
    return await _act(stream_id, StreamAction.DELETE, principal, db, runtime)


@player_access_routes.get(
    "", response_model=PlayerAccessOut, summary="Whether player reads of stream info need a playback token"
)
@reads
async def read_player_access(principal: Annotated[Principal, require("org:read")]) -> PlayerAccessOut:
    return _player_access(principal, organisation_of(principal).player_token_required)


@player_access_routes.put(
    "",
    response_model=PlayerAccessOut,
    summary="Require a playback token for anonymous and player-key stream reads (Secure Playback)",
)
@writes
async def set_player_access(
    body: PlayerAccess, principal: Annotated[Principal, require("apikey:rotate")], db: DbSession
) -> PlayerAccessOut:
    return _player_access(principal, await set_player_token_required(db, principal, body.token_required))


def _player_access(principal: Principal, required: bool) -> PlayerAccessOut:
    secure_playback = has_package(organisation_of(principal).packages, "secure_playback")
    return PlayerAccessOut(token_required=required, secure_playback=secure_playback)


# What app.py includes: the stream routes and the organisation's player-access setting, which is
# part of the same feature (who may read stream info without credentials). Two routers side by
# side, not one including both: FastAPI matches a nested inclusion again at each level when it
# hands the request down, 20-35 us per stream request (a route-matching probe, in-process).
routers = (stream_routes, player_access_routes)
