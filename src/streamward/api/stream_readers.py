"""Who reads stream info on the bintu read paths, and what they get.

The ``player`` access rule: players read stream info without an API key (NP4 ``?profile=player``,
the diag page and plain pages read ``GET /stream/{id}`` anonymously), SDKs list streams with the
player key (``X-BINTU-PLAYERKEY``), and everything else keeps working with credentials.

* credentials (``X-BINTU-TOKEN`` / ``X-BINTU-APIKEY``): must be valid and hold ``stream:read``;
  the full stream object (the player profile with ``?profile=player``);
* the player key: the player profile of its organisation's streams; listings only with tags;
* nothing: the player profile of one stream or stream group, by id.

Players never see locked or deleted streams (404). When the organisation requires a playback token
for player reads (Secure Playback), anonymous and player-key readers must present one, as
``?token=`` (a player's URL is all it controls) or the ``X-Playback-Token`` header; it is checked
with the token service's own verifier, for the stream read.

What players read without credentials is public: such answers are served from the process's
player-read cache (streams/player_cache.py, at most a second old) with a strong ``ETag``,
``Cache-Control: public, max-age=1`` and ``304`` on a matching ``If-None-Match``, so that a CDN in
front can absorb a crowd too (``cached_or_read``, ``public_answer``). Answers to credentials and
answers of an organisation that requires a playback token are never cached: the former keep the
API's ``no-store``; the latter are ``private, no-store`` (a shared cache must not hand one reader's
token-checked answer to the next), and the token is checked on every request.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pydantic_core
from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Scope

from streamward.authz.grants import check
from streamward.authz.principal import Principal
from streamward.authz.scoping import Tenant
from streamward.db import LookupSource
from streamward.errors import Forbidden, Unauthenticated
from streamward.orgs.models import Organisation, organisation_of
from streamward.orgs.packages import has_package
from streamward.orgs.player_access import organisation_by_player_key
from streamward.playback.errors import SplayError
from streamward.playback.service import Presentation, verify
from streamward.runtime import Runtime, client_address
from streamward.streams.models import Stream
from streamward.streams.player_cache import CachedAnswer, Fill, PlayerCache, player_cache
from streamward.streams.playout import Addresses, listed_json, player_object, stream_object
from streamward.streams.service import StreamView
from streamward.vod import service as vod
from streamward.web.access import access_rule
from streamward.web.authenticate import API_KEY_HEADER, MAX_CREDENTIAL_LENGTH, TOKEN_HEADER, authenticate
from streamward.web.session import LookupDb

PLAYER_KEY_HEADER = "X-BINTU-PLAYERKEY"
PLAYBACK_TOKEN_HEADER = "X-Playback-Token"
PLAYBACK_TOKEN_QUERY = "token"
# ``?profile=player``: the player profile, whoever reads.
PLAYER_PROFILE = "player"


class PlaybackTokenRequired(Forbidden):
    code = "playback_token_required"
    message = "This organisation's streams can be read by players with a playback token only."


class PlaybackTokenRefused(Forbidden):
    code = "playback_token_invalid"


@dataclass(frozen=True)
class OrganisationScope:
    """Queries scoped to the organisation a player key names."""

    organisation: Organisation

    @property
    def organisation_id(self) -> uuid.UUID:
        return self.organisation.id


@dataclass(frozen=True)
class StreamReader:
    """The caller of a bintu stream read: credentials, the player key, or nobody."""

    principal: Principal | None = None
    player_organisation: Organisation | None = None
    playback_token: str | None = None
    address: str | None = None
    domain: str | None = None

    @property
    def tenant(self) -> Tenant | None:
        """Whose streams the reader is confined to (None: anonymous, one stream at a time)."""
        if self.principal is not None:
            return self.principal
        if self.player_organisation is not None:
            return OrganisationScope(self.player_organisation)
        return None

    @property
    def is_player(self) -> bool:
        return self.principal is None

    def may_read_vod(self, organisation: Organisation) -> bool:
        """Recorded assets in ``playout.web``: with the VOD package, to readers of a public VOD
        organisation, or to its members holding ``vod:read`` (the VOD API's own rule)."""
        if not has_package(organisation.packages, "vod"):
            return False
        return organisation.vod_public or (self.principal is not None and self.principal.can("vod:read"))


def _origin_host(request: Request) -> str | None:
    origin = request.headers.get("origin") or request.headers.get("referer")
    return urlsplit(origin).hostname if origin else None


@access_rule("player")
async def stream_reader(request: Request, db: LookupDb) -> StreamReader:
    """Credentials when sent (and then they must be valid and hold ``stream:read``), else the
    player key when sent (it must be valid), else an anonymous player."""
    if request.headers.get(TOKEN_HEADER) or request.headers.get(API_KEY_HEADER):
        principal = check(await authenticate(request), "stream:read")
        return StreamReader(principal=principal)
    token = request.query_params.get(PLAYBACK_TOKEN_QUERY) or request.headers.get(PLAYBACK_TOKEN_HEADER)
    reader = StreamReader(
        playback_token=token,
        address=client_address(request),
        domain=_origin_host(request),
    )
    player_key = request.headers.get(PLAYER_KEY_HEADER)
    if player_key:
        organisation = (
            await organisation_by_player_key(db, player_key)
            if len(player_key) <= MAX_CREDENTIAL_LENGTH
            else None
        )
        if organisation is None:
            raise Unauthenticated("The player key is not valid.")
        return StreamReader(
            player_organisation=organisation,
            playback_token=reader.playback_token,
            address=reader.address,
            domain=reader.domain,
        )
    return reader


STREAM_READER = Depends(stream_reader)


async def _verified_claims(
    source: LookupSource, reader: StreamReader, stream: Stream | None, issuer: str
) -> dict[str, Any]:
    if not reader.playback_token:
        raise PlaybackTokenRequired()
    where = Presentation(stream=stream.name if stream else None, domain=reader.domain, ip=reader.address)
    try:
        return await verify(source, reader.playback_token, where, issuer=issuer)
    except SplayError as refused:
        raise PlaybackTokenRefused(
            f"The playback token was refused: {refused.message}", details={"reason": refused.code}
        ) from None


async def check_player_read(
    source: LookupSource, reader: StreamReader, organisation: Organisation, stream: Stream, *, issuer: str
) -> None:
    """For players only: the organisation's playback-token requirement, for this stream."""
    if reader.is_player and organisation.player_token_required:
        await _verified_claims(source, reader, stream, issuer)


async def playable_for_token(
    source: LookupSource,
    reader: StreamReader,
    organisation: Organisation,
    streams: Sequence[Stream],
    *,
    issuer: str,
) -> list[Stream]:
    """A player-key listing of an organisation that requires playback tokens: only the streams the
    presented token grants (its stream names, its group, or the whole organisation)."""
    if not (reader.is_player and organisation.player_token_required):
        return list(streams)
    claims = await _verified_claims(source, reader, None, issuer)
    if claims.get("org") != str(organisation.id):
        raise PlaybackTokenRefused(
            "The playback token belongs to another organisation.", details={"reason": "other_organisation"}
        )
    if claims.get("orgawide") is True:
        return list(streams)
    names = set(claims.get("streams") or [])
    group = claims.get("groupid")
    return [s for s in streams if s.name in names or (group is not None and s.group_id == group)]


def shows_recordings(reader: StreamReader, views: Sequence[StreamView]) -> bool:
    """Whether ``with_recordings`` would read anything for these views: the reader may see them."""
    organisation = organisation_of(reader.principal) if reader.principal else reader.player_organisation
    return bool(views) and organisation is not None and reader.may_read_vod(organisation)


async def with_recordings(
    session: AsyncSession, reader: StreamReader, views: list[StreamView], asset_limit: int
) -> list[StreamView]:
    """The views with their newest recorded assets (``playout.web``), when the reader may see them."""
    if not shows_recordings(reader, views):
        return views
    organisation_id = views[0].stream.organisation_id
    assets = await vod.recorded_assets(
        session, organisation_id, [v.stream.id for v in views], per_stream=asset_limit
    )
    return [replace(v, vod=assets[v.stream.id]) for v in views]


def present(
    view: StreamView, reader: StreamReader, addresses: Addresses, profile: str | None
) -> dict[str, Any]:
    """The stream object the reader gets: players (and ``?profile=player``) the player profile,
    credentials the full object, its push URL only with ``stream:manage``."""
    principal = reader.principal
    if principal is None or profile == PLAYER_PROFILE:
        return player_object(view, addresses)
    return stream_object(view, addresses, show_push_url=principal.can("stream:manage"))


def present_listed(
    views: Sequence[StreamView], reader: StreamReader, addresses: Addresses, profile: str | None
) -> bytes:
    """A listing's JSON array: each stream as ``present`` would show it to the reader, built once per
    version of its row and kept (``playout.listed_json``)."""
    principal = reader.principal
    player = principal is None or profile == PLAYER_PROFILE
    show_push_url = not player and principal is not None and principal.can("stream:manage")
    parts = [listed_json(view, addresses, player=player, show_push_url=show_push_url) for view in views]
    return b"[" + b",".join(parts) + b"]"


# --- Public answers: the player-read cache --------------------------------------------------------

PUBLIC_CACHE_CONTROL = "public, max-age=1"
# Answers of an organisation that requires a playback token: checked per reader, never shared.
PRIVATE_CACHE_CONTROL = "private, no-store"
# A public answer depends on these request headers (credentials get another answer, the player key
# confines the reader to its organisation): a shared cache must keep answers apart by them.
PUBLIC_VARY = f"{TOKEN_HEADER}, {API_KEY_HEADER}, {PLAYER_KEY_HEADER}"
_FILL = "streamward.player_read_fill"
_CREDENTIAL_HEADERS = (TOKEN_HEADER.lower().encode(), API_KEY_HEADER.lower().encode())
_PLAYER_KEY = PLAYER_KEY_HEADER.lower().encode()
_IF_NONE_MATCH = b"if-none-match"
_TOKEN_PARAMETER = PLAYBACK_TOKEN_QUERY.encode()

ReadHandler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _PlayerRequest:
    player_key: str | None
    if_none_match: str | None


def _player_request(scope: Scope) -> _PlayerRequest | None:
    """The headers a public answer depends on, from one pass over the raw headers; None when the
    request carries credentials (their answers are never cached). The first value of a header
    counts, as ``request.headers.get`` (which the access rule reads) takes it."""
    player_key = if_none_match = None
    seen: set[bytes] = set()
    for name, value in scope["headers"]:
        if name in seen:
            continue
        if name in _CREDENTIAL_HEADERS:
            if value:
                return None
            seen.add(name)
        elif name == _PLAYER_KEY:
            player_key = value.decode("latin-1") or None
            seen.add(name)
        elif name == _IF_NONE_MATCH:
            if_none_match = value.decode("latin-1")
            seen.add(name)
    return _PlayerRequest(player_key, if_none_match)


def _query_key(query: bytes, *, keep_token: bool) -> Hashable:
    """The query as part of a cache key. A playback token is irrelevant to a public answer (only
    organisations that require one check it, and their answers are never shared), so one viewer's
    token does not make a key of its own; a listing keeps it, as its Link header repeats the query."""
    if keep_token or _TOKEN_PARAMETER not in query:
        return query
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return tuple(pair for pair in pairs if pair[0] != PLAYBACK_TOKEN_QUERY)


def _cache_key(kind: str, scope: Scope, path_params: dict[str, Any], player_key: str | None) -> Hashable:
    query: bytes = scope["query_string"]
    if kind == "list":
        return (kind, scope["path"], query, player_key)
    return (kind, path_params.get("stream_id"), _query_key(query, keep_token=False), player_key)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: weak comparison, any of a list, or ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _serve(answer: CachedAnswer, if_none_match: str | None) -> Response:
    headers = {"etag": answer.etag, "cache-control": PUBLIC_CACHE_CONTROL, "vary": PUBLIC_VARY}
    if _matches(if_none_match, answer.etag):
        return Response(status_code=304, headers=headers)
    headers.update(answer.headers)
    return Response(answer.body, media_type="application/json", headers=headers)


@dataclass(frozen=True, slots=True)
class PlayerLookup:
    """What the player-read cache holds for one request: its key, and the answer stored under it
    (a public one, or the note that such readers each get their own), if any."""

    key: Hashable
    answer: CachedAnswer | None
    if_none_match: str | None

    def response(self) -> Response | None:
        """The cached answer to send, when there is a public one."""
        if self.answer is None or not self.answer.public:
            return None
        return _serve(self.answer, self.if_none_match)


def cached_answer(
    kind: str, scope: Scope, path_params: dict[str, Any], cache: PlayerCache
) -> PlayerLookup | None:
    """For a GET that may get a public player answer, what the cache holds for it; None for a
    request whose answer is never shared (credentials sent, a listing without the player key)."""
    asked = _player_request(scope) if scope["method"] == "GET" else None
    if asked is None or (kind == "list" and asked.player_key is None):
        return None
    key = _cache_key(kind, scope, path_params, asked.player_key)
    return PlayerLookup(key, cache.get(key), asked.if_none_match)


async def cached_or_read(kind: str, request: Request, read: ReadHandler) -> Response:
    """A public player read from the cache when it holds the answer, else ``read`` (the route's
    own handler: access rule, database, ``public_answer``), which stores it for the next readers."""
    runtime: Runtime = request.app.state.runtime
    cache = player_cache(runtime.database)
    looked = cached_answer(kind, request.scope, request.path_params, cache)
    if looked is None:
        return await read(request)
    answer, fill = looked.answer, None
    if answer is None:
        answer, fill = await cache.lead_or_wait(looked.key)
    if answer is not None:
        if answer.public:
            return _serve(answer, looked.if_none_match)
        return await read(request)  # answers for this reader only: nothing to share, nothing to wait for
    assert fill is not None
    request.scope[_FILL] = fill
    try:
        return await read(request)
    finally:
        cache.finish(fill)  # an answer that could not be stored: whoever waited reads for itself


def serialised(content: Any) -> bytes:
    """An answer's JSON: ``content`` serialised, or as it is when it is JSON already (``bytes``: a
    listing joined from the stream objects it kept, ``listed_json``)."""
    return content if isinstance(content, bytes) else pydantic_core.to_json(content)


def public_answer(
    request: Request,
    runtime: Runtime,
    organisation_id: uuid.UUID,
    content: Any,
    headers: dict[str, str] | None = None,
) -> Response:
    """The answer to a player whose organisation requires no playback token: public, stored in the
    cache for the next readers of the same thing (when this request began a reading of it)."""
    body = serialised(content)
    extra = tuple((headers or {}).items())
    fill: Fill | None = request.scope.get(_FILL)
    answer, _ = player_cache(runtime.database).put(fill, organisation_id, body, extra)
    return _serve(answer, request.headers.get("if-none-match"))


def private_answer(
    request: Request,
    runtime: Runtime,
    organisation_id: uuid.UUID,
    content: Any,
    headers: dict[str, str] | None = None,
) -> Response:
    """The answer to a player whose organisation requires a playback token: for this reader only.
    The cache notes just that, so that the next readers of the same thing do not wait for others."""
    fill: Fill | None = request.scope.get(_FILL)
    player_cache(runtime.database).put(fill, organisation_id, b"", public=False)
    return Response(
        serialised(content),
        media_type="application/json",
        headers={"cache-control": PRIVATE_CACHE_CONTROL, **(headers or {})},
    )
