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
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authz.grants import check
from streamward.authz.principal import Principal
from streamward.authz.scoping import Tenant
from streamward.errors import Forbidden, Unauthenticated
from streamward.orgs.models import Organisation, organisation_of
from streamward.orgs.packages import has_package
from streamward.orgs.player_access import organisation_by_player_key
from streamward.playback.errors import SplayError
from streamward.playback.service import Presentation, verify
from streamward.runtime import client_address
from streamward.streams.models import Stream
from streamward.streams.playout import Addresses, player_object, stream_object
from streamward.streams.service import StreamView
from streamward.vod import service as vod
from streamward.web.access import access_rule
from streamward.web.authenticate import API_KEY_HEADER, MAX_CREDENTIAL_LENGTH, TOKEN_HEADER, authenticate
from streamward.web.params import RuntimeDep
from streamward.web.session import DbSession

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
async def stream_reader(request: Request, db: DbSession, runtime: RuntimeDep) -> StreamReader:
    """Credentials when sent (and then they must be valid and hold ``stream:read``), else the
    player key when sent (it must be valid), else an anonymous player."""
    if request.headers.get(TOKEN_HEADER) or request.headers.get(API_KEY_HEADER):
        principal = check(await authenticate(request, db, runtime), "stream:read")
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
    session: AsyncSession, reader: StreamReader, stream: Stream | None, issuer: str
) -> dict[str, Any]:
    if not reader.playback_token:
        raise PlaybackTokenRequired()
    where = Presentation(stream=stream.name if stream else None, domain=reader.domain, ip=reader.address)
    try:
        return await verify(session, reader.playback_token, where, issuer=issuer)
    except SplayError as refused:
        raise PlaybackTokenRefused(
            f"The playback token was refused: {refused.message}", details={"reason": refused.code}
        ) from None


async def check_player_read(
    session: AsyncSession, reader: StreamReader, organisation: Organisation, stream: Stream, *, issuer: str
) -> None:
    """For players only: the organisation's playback-token requirement, for this stream."""
    if reader.is_player and organisation.player_token_required:
        await _verified_claims(session, reader, stream, issuer)


async def playable_for_token(
    session: AsyncSession,
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
    claims = await _verified_claims(session, reader, None, issuer)
    if claims.get("org") != str(organisation.id):
        raise PlaybackTokenRefused(
            "The playback token belongs to another organisation.", details={"reason": "other_organisation"}
        )
    if claims.get("orgawide") is True:
        return list(streams)
    names = set(claims.get("streams") or [])
    group = claims.get("groupid")
    return [s for s in streams if s.name in names or (group is not None and s.group_id == group)]


async def with_recordings(
    session: AsyncSession, reader: StreamReader, views: list[StreamView], asset_limit: int
) -> list[StreamView]:
    """The views with their newest recorded assets (``playout.web``), when the reader may see them."""
    if not views:
        return views
    organisation_id = views[0].stream.organisation_id
    organisation = organisation_of(reader.principal) if reader.principal else reader.player_organisation
    if organisation is None or not reader.may_read_vod(organisation):
        return views
    assets = await vod.recorded_assets(
        session, organisation_id, [v.stream.id for v in views], per_stream=asset_limit
    )
    return [StreamView(v.stream, v.tags, assets[v.stream.id]) for v in views]


def present(
    view: StreamView, reader: StreamReader, addresses: Addresses, profile: str | None
) -> dict[str, Any]:
    """The stream object the reader gets: players (and ``?profile=player``) the player profile,
    credentials the full object, its push URL only with ``stream:manage``."""
    principal = reader.principal
    if principal is None or profile == PLAYER_PROFILE:
        return player_object(view, addresses)
    return stream_object(view, addresses, show_push_url=principal.can("stream:manage"))
