"""Streams: creation, reads, tags of one stream, and the lifecycle.

The lifecycle is one table (``TRANSITIONS``) and one function that applies it (``apply_action``):
the JSON API uses it for stop/lock/unlock/delete, and media-server ingest uses it for
``publish``/``publish_done``. Anything the table does not allow is refused with 409.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, get_args

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authz.principal import Principal
from streamward.authz.scoping import get_scoped, scoped
from streamward.config import Settings
from streamward.db import utcnow
from streamward.errors import Conflict
from streamward.events.outbox import emit
from streamward.orgs.packages import require_package
from streamward.pagination import Page, keyset_page
from streamward.streams.models import Stream, StreamState, StreamTag
from streamward.streams.tags import replace_tags, tags_of

# Renditions a stream can be transcoded into (Transcoding package); each is played out under
# "<stream name>-<profile>".
TranscodeProfile = Literal["1080p", "720p", "480p", "360p", "240p"]
TRANSCODE_PROFILES: tuple[str, ...] = get_args(TranscodeProfile)

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
        emit(session, "stream.deleted", payload, organisation_id=stream.organisation_id)
    else:
        emit(
            session,
            "stream.updated",
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


async def create_stream(
    session: AsyncSession,
    principal: Principal,
    *,
    tags: list[str],
    transcodes: list[str],
    group_id: str | None,
) -> StreamView:
    if transcodes:
        require_package(principal.organisation.packages, "transcoding")
    stream = await _insert_with_unique_name(session, principal, transcodes=transcodes, group_id=group_id)
    stored_tags = await replace_tags(session, stream, [], tags)  # a new stream has none yet
    record(
        session,
        Actor.of(principal),
        "stream.created",
        organisation_id=principal.organisation_id,
        target_type="stream",
        target_id=stream.id,
        after={"name": stream.name, "tags": stored_tags, "transcodes": transcodes, "groupId": group_id},
    )
    emit(
        session,
        "stream.created",
        {"id": str(stream.id), "name": stream.name, "state": stream.state, "tags": stored_tags},
        organisation_id=principal.organisation_id,
    )
    return StreamView(stream, stored_tags)


async def _insert_with_unique_name(
    session: AsyncSession, principal: Principal, *, transcodes: list[str], group_id: str | None
) -> Stream:
    # A collision is astronomically unlikely; the savepoint makes it a retry instead of a failed request.
    for attempt in range(_NAME_ATTEMPTS):
        now = utcnow()
        stream = Stream(
            organisation_id=principal.organisation_id,
            name=new_stream_name(),
            state=StreamState.CREATED.value,
            group_id=group_id,
            transcodes=transcodes,
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
    principal: Principal,
    *,
    tags: Sequence[str],
    state: StreamState | None,
    group_id: str | None,
    limit: int,
    cursor: str | None,
) -> Page[StreamView]:
    """Newest first. Deleted streams are listed only when asked for by state; several tags: all of them."""
    statement = scoped(select(Stream), Stream, principal)
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
            "stream.updated",
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


@dataclass(frozen=True)
class Rendition:
    name: str  # "source" or a transcode profile
    stream_name: str
    url: str


def playout_of(settings: Settings, stream: Stream) -> list[Rendition]:
    """Where players fetch the stream: the source rendition, then one per transcode."""
    renditions = [("source", stream.name)] + [
        (profile, f"{stream.name}-{profile}") for profile in stream.transcodes
    ]
    return [
        Rendition(rendition, name, f"{settings.playout_base_url}/{name}/index.m3u8")
        for rendition, name in renditions
    ]
