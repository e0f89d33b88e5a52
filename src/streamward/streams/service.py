"""Streams: creation, reads, tags of one stream, and the lifecycle.

The lifecycle is one table (``TRANSITIONS``) and one function that applies it (``apply_action``):
the JSON API uses it for stop/lock/unlock/delete, and media-server ingest uses it for
``publish``/``publish_done``. Anything the table does not allow is refused with 409.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authz.principal import Principal
from streamward.authz.scoping import Tenant, get_scoped, scoped
from streamward.db import end_transaction, utcnow
from streamward.egress.guard import Resolver, UnsafeTarget, resolve_public
from streamward.errors import BadRequest, Conflict, NotFound
from streamward.events.catalogue import EventType
from streamward.events.outbox import emit
from streamward.orgs.models import Organisation, organisation_of
from streamward.orgs.packages import require_package
from streamward.pagination import Page, keyset_page
from streamward.streams.models import Stream, StreamState, StreamTag
from streamward.streams.tags import replace_tags, tags_of

# bintu's transcoding profile names: "vtrans2-852x480x800x25" (width x height x kbps x fps) or
# "vtrans2-800k" (a bitrate only); "vtrans-" without the 2 is the older spelling of the same.
_PROFILE = re.compile(r"vtrans2?-(?:(\d{1,5})x(\d{1,5})x(\d{1,6})x(\d{1,3})|(\d{1,6})k)")
MAX_DIMENSION = 8192
MAX_BITRATE_KBPS = 100_000
MAX_FPS = 240
MAX_TRANSCODES = 8
# Offered by the dashboard; any name of the grammar above is accepted by the API.
COMMON_PROFILES: tuple[str, ...] = (
    "vtrans2-1280x720x2500x30",
    "vtrans2-852x480x800x25",
    "vtrans2-640x360x400x25",
    "vtrans2-426x240x200x25",
)
# Streams a player may see; locked and deleted ones do not exist for it.
PLAYABLE_STATES = (StreamState.CREATED.value, StreamState.LIVE.value, StreamState.ENDED.value)

_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_NAME_ATTEMPTS = 3


class StreamAction(StrEnum):
    PUBLISH = "publish"  # media server: a broadcaster started sending
    PUBLISH_DONE = "publish_done"  # media server: the broadcast ended
    STOP = "stop"
    LOCK = "lock"
    UNLOCK = "unlock"
    DELETE = "delete"


# From-state -> to-state for every action; a missing pair is a refused transition (409).
# A locked stream can neither go live nor be deleted; unlocking returns to the state it was locked in.
# A live stream must be stopped before it is locked or deleted.
TRANSITIONS: dict[StreamAction, dict[StreamState, StreamState]] = {
    StreamAction.PUBLISH: {StreamState.CREATED: StreamState.LIVE, StreamState.ENDED: StreamState.LIVE},
    StreamAction.PUBLISH_DONE: {StreamState.LIVE: StreamState.ENDED},
    StreamAction.STOP: {StreamState.LIVE: StreamState.ENDED},
    StreamAction.LOCK: {StreamState.CREATED: StreamState.LOCKED, StreamState.ENDED: StreamState.LOCKED},
    # The target is a placeholder: apply_action restores the state before the lock.
    StreamAction.UNLOCK: {StreamState.LOCKED: StreamState.CREATED},
    StreamAction.DELETE: {StreamState.CREATED: StreamState.DELETED, StreamState.ENDED: StreamState.DELETED},
}

_AUDIT_ACTIONS = {
    StreamAction.PUBLISH: "stream.published",
    StreamAction.PUBLISH_DONE: "stream.publish_done",
    StreamAction.STOP: "stream.stopped",
    StreamAction.LOCK: "stream.locked",
    StreamAction.UNLOCK: "stream.unlocked",
    StreamAction.DELETE: "stream.deleted",
}


_PAST_TENSE = {
    StreamAction.PUBLISH: "published",
    StreamAction.PUBLISH_DONE: "ended",
    StreamAction.STOP: "stopped",
    StreamAction.LOCK: "locked",
    StreamAction.UNLOCK: "unlocked",
    StreamAction.DELETE: "deleted",
}
_HINTS = {
    (StreamAction.DELETE, StreamState.LIVE): " Stop it first.",
    (StreamAction.LOCK, StreamState.LIVE): " Stop it first.",
    (StreamAction.DELETE, StreamState.LOCKED): " Unlock it first.",
}


class StreamStateConflict(Conflict):
    code = "stream_state_conflict"

    def __init__(self, action: StreamAction, state: StreamState) -> None:
        allowed = sorted(TRANSITIONS[action])
        super().__init__(
            f"A {state.value} stream cannot be {_PAST_TENSE[action]}.{_HINTS.get((action, state), '')}",
            details={"state": state.value, "action": action.value, "allowedFrom": [s.value for s in allowed]},
        )


def next_state(stream: Stream, action: StreamAction) -> StreamState:
    """Where ``action`` takes ``stream``; raises StreamStateConflict when the table refuses it."""
    current = StreamState(stream.state)
    target = TRANSITIONS[action].get(current)
    if target is None:
        raise StreamStateConflict(action, current)
    if action is StreamAction.UNLOCK:
        return StreamState(stream.state_before_lock or StreamState.CREATED)
    return target


async def apply_action(
    session: AsyncSession, stream: Stream, action: StreamAction, *, actor: Actor
) -> Stream:
    """Move ``stream`` through the lifecycle, with its audit entry and event, in the caller's transaction.

    The caller loads the stream for update (``find_by_name`` or ``get_stream(..., for_update=True)``)
    so that two concurrent actions on one stream are applied one after the other.
    """
    before = StreamState(stream.state)
    after = next_state(stream, action)
    stream.state_before_lock = before.value if after is StreamState.LOCKED else None
    stream.state = after.value
    stream.updated_at = utcnow()
    if after is StreamState.DELETED:
        # A deleted stream uses no tag any more (the overview's tag counts drop at once).
        await session.execute(delete(StreamTag).where(StreamTag.stream_id == stream.id))
    record(
        session,
        actor,
        _AUDIT_ACTIONS[action],
        organisation_id=stream.organisation_id,
        target_type="stream",
        target_id=stream.id,
        before={"state": before.value},
        after={"state": after.value},
    )
    payload = {"id": str(stream.id), "name": stream.name, "state": after.value, "previousState": before.value}
    if after is StreamState.DELETED:
        emit(session, EventType.STREAM_DELETED, payload, organisation_id=stream.organisation_id)
    else:
        emit(
            session,
            EventType.STREAM_UPDATED,
            payload | {"change": action.value},
            organisation_id=stream.organisation_id,
        )
    await session.flush()
    return stream


async def find_by_name(session: AsyncSession, name: str, *, for_update: bool = False) -> Stream | None:
    """A stream by its (globally unique) name, whatever its organisation: for callers that are not a
    tenant (media servers, the playback-token verifier). Never expose the result to another tenant."""
    statement = select(Stream).where(Stream.name == name)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


def new_stream_name() -> str:
    """Two groups of five: easy to read out, about 52 bits of randomness."""
    chars = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(10))
    return f"{chars[:5]}-{chars[5:]}"


@dataclass(frozen=True)
class StreamView:
    stream: Stream
    tags: list[str]
    # Recorded assets of the stream, newest first, when the reader may see them (playout.web).
    vod: Sequence[Recording] = field(default=())


class Recording(Protocol):
    """What a stream object shows of a recorded asset (the vod feature's rows have these)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def stream_id(self) -> uuid.UUID | None: ...
    @property
    def url(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def duration_seconds(self) -> float: ...


class InvalidTranscodeProfile(BadRequest):
    code = "invalid_transcode_profile"


@dataclass(frozen=True)
class TranscodeRequest:
    """One entry of ``transcodes`` as a client sends it: ``{"profile": "vtrans2-...", "tags": [...]}``."""

    profile: str
    tags: list[str] = field(default_factory=list)


def parse_profile(profile: str) -> tuple[int, int, int, int]:
    """(width, height, bitrate in kbps, fps) of a bintu profile name; 0 where the name says nothing
    (a bitrate-only profile keeps the source's size and frame rate). Raises InvalidTranscodeProfile."""
    match = _PROFILE.fullmatch(profile)
    if match is None:
        raise InvalidTranscodeProfile(
            f"Unknown transcode profile {profile[:80]!r}: use vtrans2-<width>x<height>x<kbps>x<fps> "
            "(e.g. vtrans2-852x480x800x25) or vtrans2-<kbps>k.",
            details={"profile": profile[:80]},
        )
    if match.group(5) is not None:
        width, height, bitrate, fps = 0, 0, int(match.group(5)), 0
    else:
        width, height, bitrate, fps = (int(group) for group in match.groups()[:4])
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION and 0 < fps <= MAX_FPS):
            raise InvalidTranscodeProfile(
                f"Transcode profile {profile!r} is out of range (size up to {MAX_DIMENSION}, "
                f"frame rate up to {MAX_FPS}).",
                details={"profile": profile},
            )
    if not 0 < bitrate <= MAX_BITRATE_KBPS:
        raise InvalidTranscodeProfile(
            f"Transcode profile {profile!r}: the bitrate must be 1 to {MAX_BITRATE_KBPS} kbps.",
            details={"profile": profile},
        )
    return width, height, bitrate, fps


def plan_renditions(stream_name: str, requests: Sequence[TranscodeRequest]) -> list[dict[str, Any]]:
    """The stored rendition objects for ``requests``, in order; each plays out as
    "<stream name>-<position>" (the passthrough, position 0, is the stream itself)."""
    if len(requests) > MAX_TRANSCODES:
        raise InvalidTranscodeProfile(
            f"A stream has at most {MAX_TRANSCODES} transcoded renditions.", details={"max": MAX_TRANSCODES}
        )
    seen: set[str] = set()
    renditions = []
    for position, request in enumerate(requests, start=1):
        width, height, bitrate, fps = parse_profile(request.profile)
        if request.profile in seen:
            raise InvalidTranscodeProfile(
                f"Transcode profile {request.profile!r} is given twice.", details={"profile": request.profile}
            )
        seen.add(request.profile)
        renditions.append(
            {
                "id": str(uuid.uuid4()),
                "profile": request.profile,
                "width": width,
                "height": height,
                "bitrate": bitrate,
                "fps": fps,
                "streamname": f"{stream_name}-{position}",
                "tags": list(request.tags),
            }
        )
    return renditions


async def create_stream(
    session: AsyncSession,
    principal: Principal,
    *,
    tags: list[str],
    transcodes: Sequence[TranscodeRequest],
    group_id: str | None,
    stream_type: str = "live",
) -> StreamView:
    if transcodes:
        plan_renditions("check", transcodes)  # a malformed profile is 400 whatever the packages
        require_package(organisation_of(principal).packages, "transcoding")
    stream = await _insert_with_unique_name(
        session, principal, transcodes=transcodes, group_id=group_id, stream_type=stream_type
    )
    stored_tags = await replace_tags(session, stream, [], tags)  # a new stream has none yet
    record(
        session,
        Actor.of(principal),
        "stream.created",
        organisation_id=principal.organisation_id,
        target_type="stream",
        target_id=stream.id,
        after={
            "name": stream.name,
            "tags": stored_tags,
            "transcodes": [t.profile for t in transcodes],
            "groupId": group_id,
            "type": stream_type,
        },
    )
    emit(
        session,
        EventType.STREAM_CREATED,
        {"id": str(stream.id), "name": stream.name, "state": stream.state, "tags": stored_tags},
        organisation_id=principal.organisation_id,
    )
    return StreamView(stream, stored_tags)


async def _insert_with_unique_name(
    session: AsyncSession,
    principal: Principal,
    *,
    transcodes: Sequence[TranscodeRequest],
    group_id: str | None,
    stream_type: str,
) -> Stream:
    # A collision is astronomically unlikely; the savepoint makes it a retry instead of a failed request.
    for attempt in range(_NAME_ATTEMPTS):
        now = utcnow()
        name = new_stream_name()
        stream = Stream(
            organisation_id=principal.organisation_id,
            name=name,
            state=StreamState.CREATED.value,
            group_id=group_id,
            transcodes=plan_renditions(name, transcodes),
            type=stream_type,
            created_at=now,
            updated_at=now,
        )
        try:
            async with session.begin_nested():
                session.add(stream)
                await session.flush()
        except IntegrityError:
            if attempt == _NAME_ATTEMPTS - 1:
                raise
            continue
        return stream
    raise AssertionError("unreachable")


async def get_stream(
    session: AsyncSession, principal: Principal, stream_id: uuid.UUID | str, *, for_update: bool = False
) -> Stream:
    return await get_scoped(session, Stream, stream_id, principal, what="stream", for_update=for_update)


async def read_stream(session: AsyncSession, principal: Principal, stream_id: uuid.UUID | str) -> StreamView:
    stream = await get_stream(session, principal, stream_id)
    return StreamView(stream, (await tags_of(session, [stream.id]))[stream.id])


async def list_streams(
    session: AsyncSession,
    principal: Tenant,
    *,
    tags: Sequence[str],
    state: StreamState | None,
    group_id: str | None,
    limit: int,
    cursor: str | None,
    playable_only: bool = False,
) -> Page[StreamView]:
    """Newest first. Deleted streams are listed only when asked for by state; several tags: all of
    them. ``playable_only`` (players): locked and deleted streams are never listed."""
    statement = scoped(select(Stream), Stream, principal)
    if playable_only:
        statement = statement.where(Stream.state.in_(PLAYABLE_STATES))
    if state is None:
        statement = statement.where(Stream.state != StreamState.DELETED.value)
    else:
        statement = statement.where(Stream.state == state.value)
    if group_id is not None:
        statement = statement.where(Stream.group_id == group_id)
    for tag in dict.fromkeys(tags):
        statement = statement.where(exists().where(StreamTag.stream_id == Stream.id, StreamTag.tag == tag))
    page = await keyset_page(session, statement, Stream.id, limit=limit, cursor=cursor)
    streams: list[Stream] = list(page.items)
    tag_map = await tags_of(session, [stream.id for stream in streams])
    return Page([StreamView(stream, tag_map[stream.id]) for stream in streams], page.next_cursor)


async def set_stream_tags(
    session: AsyncSession, principal: Principal, stream_id: uuid.UUID | str, tags: list[str]
) -> StreamView:
    stream = await get_stream(session, principal, stream_id, for_update=True)
    if stream.state == StreamState.DELETED:
        raise Conflict(
            "A deleted stream cannot be tagged.",
            code="stream_state_conflict",
            details={"state": stream.state, "action": "tag"},
        )
    before = (await tags_of(session, [stream.id]))[stream.id]
    after = await replace_tags(session, stream, before, tags)
    if after != before:
        stream.updated_at = utcnow()
        record(
            session,
            Actor.of(principal),
            "stream.tags_updated",
            organisation_id=principal.organisation_id,
            target_type="stream",
            target_id=stream.id,
            before={"tags": before},
            after={"tags": after},
        )
        emit(
            session,
            EventType.STREAM_UPDATED,
            {
                "id": str(stream.id),
                "name": stream.name,
                "state": stream.state,
                "change": "tags",
                "tags": after,
            },
            organisation_id=principal.organisation_id,
        )
    return StreamView(stream, after)


async def act_on_stream(
    session: AsyncSession, principal: Principal, stream_id: uuid.UUID | str, action: StreamAction
) -> StreamView:
    stream = await get_stream(session, principal, stream_id, for_update=True)
    await apply_action(session, stream, action, actor=Actor.of(principal))
    return StreamView(stream, (await tags_of(session, [stream.id]))[stream.id])


async def find_for_player(session: AsyncSession, stream_id: str) -> tuple[Stream, Organisation]:
    """A stream by id for a reader without credentials, with its organisation. Locked and deleted
    streams, like unknown ids, are not found: a player has nothing to play there."""
    try:
        key = uuid.UUID(stream_id)
    except ValueError:
        raise NotFound("No such stream.") from None
    row = (
        await session.execute(
            select(Stream, Organisation)
            .join(Organisation, Organisation.id == Stream.organisation_id)
            .where(Stream.id == key, Stream.state.in_(PLAYABLE_STATES))
        )
    ).one_or_none()
    if row is None:
        raise NotFound("No such stream.")
    return row[0], row[1]


async def find_group_head(
    session: AsyncSession, reference: str, *, tenant: Tenant | None, playable_only: bool
) -> tuple[Stream, Organisation]:
    """The stream a group request names: by id or by (globally unique) name, as REPLAY passes a
    stream name where NP4 passes a group id; or by a group id (the tenant's, or without a tenant the
    organisation's that used it first). Restricted to ``tenant``'s organisation when given."""
    try:
        by: Any = Stream.id == uuid.UUID(reference)
    except ValueError:
        by = Stream.name == reference
    statement = select(Stream, Organisation).join(Organisation, Organisation.id == Stream.organisation_id)
    if tenant is not None:
        statement = statement.where(Stream.organisation_id == tenant.organisation_id)
    if playable_only:
        statement = statement.where(Stream.state.in_(PLAYABLE_STATES))
    row = (await session.execute(statement.where(by))).one_or_none()
    if row is None:
        # A group id is unique only within its organisation. A player without credentials (NP4
        # configured with the ``streamgroup`` a stream reports) gets the group of the organisation
        # that used the id first: another organisation taking the same id later cannot take over,
        # nor break, the first one's anonymous group reads.
        in_group: Any = statement.where(
            Stream.group_id == reference, Stream.state != StreamState.DELETED.value
        )
        if tenant is None:
            first_user = await session.scalar(
                select(Stream.organisation_id)
                .where(Stream.group_id == reference, Stream.state != StreamState.DELETED.value)
                .order_by(Stream.id)
                .limit(1)
            )
            in_group = in_group.where(Stream.organisation_id == first_user) if first_user else None
        if in_group is not None:
            row = (await session.execute(in_group.order_by(Stream.id).limit(1))).one_or_none()
    if row is None:
        raise NotFound("No such stream group.")
    return row[0], row[1]


async def group_members(session: AsyncSession, head: Stream) -> list[Stream]:
    """The streams played as one group with ``head``: ``head`` first, then the other playable streams
    of its group (oldest first). A stream in no group is a group of its own renditions."""
    if head.group_id is None:
        return [head]
    others = await session.execute(
        select(Stream)
        .where(
            Stream.organisation_id == head.organisation_id,
            Stream.group_id == head.group_id,
            Stream.id != head.id,
            Stream.state.in_(PLAYABLE_STATES),
        )
        .order_by(Stream.id)
    )
    return [head, *others.scalars()]


class PushUrlRefused(BadRequest):
    code = "push_url_refused"


PUSH_SCHEMES = {"rtmp": 1935, "rtmps": 443}
MAX_PUSH_URL_LENGTH = 2048


async def check_push_url(url: str, *, allow_private: bool, resolver: Resolver) -> str:
    """A restream target: rtmp(s), no credentials in the authority, and every address its host
    resolves to public (the webhook SSRF rule: Streamward's media side would connect there)."""
    if len(url) > MAX_PUSH_URL_LENGTH:
        raise PushUrlRefused(f"The push URL is longer than {MAX_PUSH_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise PushUrlRefused("The push URL cannot be parsed.") from None
    if parts.scheme not in PUSH_SCHEMES:
        raise PushUrlRefused("The push URL must be an rtmp:// or rtmps:// URL.")
    if not parts.hostname:
        raise PushUrlRefused("The push URL has no host.")
    if parts.username or parts.password:
        raise PushUrlRefused("Credentials before the host are not allowed in a push URL.")
    try:
        await resolve_public(
            parts.hostname,
            port or PUSH_SCHEMES[parts.scheme],
            allow_private=allow_private,
            resolver=resolver,
        )
    except UnsafeTarget as refused:
        raise PushUrlRefused(refused.message.replace("webhook", "push URL")) from None
    return url


async def set_push_url(
    session: AsyncSession,
    principal: Principal,
    stream_id: uuid.UUID | str,
    url: str | None,
    *,
    allow_private: bool,
    resolver: Resolver,
) -> StreamView:
    """Set (or, with None, remove) the stream's restream target. The audit entry names only the
    target's host: the rest of such a URL is often the target's stream key."""
    if url is not None:
        # Resolving the host is a network call: never inside the write transaction.
        await end_transaction(session)
        url = await check_push_url(url, allow_private=allow_private, resolver=resolver)
    stream = await get_stream(session, principal, stream_id, for_update=True)
    if stream.state == StreamState.DELETED:
        raise Conflict(
            "A deleted stream cannot be restreamed.",
            code="stream_state_conflict",
            details={"state": stream.state, "action": "push_url"},
        )
    if url != stream.push_url:
        record(
            session,
            Actor.of(principal),
            "stream.push_url_changed",
            organisation_id=principal.organisation_id,
            target_type="stream",
            target_id=stream.id,
            before={"pushHost": urlsplit(stream.push_url).hostname if stream.push_url else None},
            after={"pushHost": urlsplit(url).hostname if url else None},
        )
        stream.push_url = url
        stream.updated_at = utcnow()
        emit(
            session,
            EventType.STREAM_UPDATED,
            {"id": str(stream.id), "name": stream.name, "state": stream.state, "change": "push_url"},
            organisation_id=principal.organisation_id,
        )
        await session.flush()
    return StreamView(stream, (await tags_of(session, [stream.id]))[stream.id])
