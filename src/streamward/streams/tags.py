"""Tags: free strings (``key:value`` allowed) that categorise streams.

A tag exists exactly while some stream of the organisation carries it: it comes into existence when
a stream is tagged with it, a rename rewrites it on every stream, a delete takes it off every stream.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record
from streamward.authz.principal import Principal
from streamward.authz.scoping import scoped
from streamward.errors import NotFound
from streamward.events.catalogue import EventType
from streamward.events.outbox import emit
from streamward.pagination import InvalidCursor, Page, decode_text_cursor, encode_text_cursor
from streamward.schemas import column_length
from streamward.streams.models import Stream, StreamTag
from streamward.streams.player_cache import note_player_change

MAX_TAG_LENGTH = column_length(StreamTag.tag)
MAX_TAGS_PER_STREAM = 50


def normalise_tag(value: str) -> str:
    """A tag as stored: surrounding whitespace dropped, then 1 to MAX_TAG_LENGTH (the column's)
    printable characters (no control character, no lone surrogate)."""
    tag = value.strip()
    if not tag:
        raise ValueError("a tag cannot be empty")
    if len(tag) > MAX_TAG_LENGTH:
        raise ValueError(f"a tag has at most {MAX_TAG_LENGTH} characters")
    if not tag.isprintable():
        raise ValueError("a tag may contain printable characters only")
    return tag


def distinct_tags(tags: Iterable[str]) -> list[str]:
    """Normalised, duplicates dropped, first occurrence kept; raises ValueError on a bad tag."""
    result = list(dict.fromkeys(normalise_tag(tag) for tag in tags))
    if len(result) > MAX_TAGS_PER_STREAM:
        raise ValueError(f"a stream carries at most {MAX_TAGS_PER_STREAM} tags")
    return result


# Built once, the ids bound as one expanding parameter: composing ``in_()`` over a page of ids coerced
# each of them into the statement, a twentieth of the CPU of listing fifty streams.
_TAGS_OF = (
    select(StreamTag.stream_id, StreamTag.tag)
    .where(StreamTag.stream_id.in_(bindparam("stream_ids", expanding=True)))
    .order_by(StreamTag.stream_id, StreamTag.tag)
)


async def tags_of(session: AsyncSession, stream_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """The tags of several streams in one query, each list sorted."""
    found: dict[uuid.UUID, list[str]] = {stream_id: [] for stream_id in stream_ids}
    if not stream_ids:
        return found
    rows = await session.execute(_TAGS_OF, {"stream_ids": list(stream_ids)})
    for stream_id, tag in rows:
        found[stream_id].append(tag)
    return found


async def replace_tags(
    session: AsyncSession, stream: Stream, current: list[str], tags: list[str]
) -> list[str]:
    """Give ``stream`` exactly ``tags`` (normalised), knowing its ``current`` ones; returns them sorted."""
    removed = [tag for tag in current if tag not in tags]
    if removed:
        await session.execute(
            delete(StreamTag).where(StreamTag.stream_id == stream.id, StreamTag.tag.in_(removed))
        )
    session.add_all(
        StreamTag(stream_id=stream.id, tag=tag, organisation_id=stream.organisation_id)
        for tag in tags
        if tag not in current
    )
    await session.flush()
    return sorted(tags)


@dataclass(frozen=True)
class TagCount:
    name: str
    streams: int


async def list_tags(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> Page[TagCount]:
    """Every tag in use, by name, with the number of streams carrying it. Tags have no id, so the
    cursor is the last name of the page (keyset on the name)."""
    statement = scoped(select(StreamTag.tag, func.count().label("streams")), StreamTag, principal).group_by(
        StreamTag.tag
    )
    if cursor:
        # The cursor is a tag name this list handed out: anything else (a NUL hidden in base64, say)
        # is refused here, before the database sees it.
        after = decode_text_cursor(cursor)
        if len(after) > MAX_TAG_LENGTH or not after.isprintable():
            raise InvalidCursor()
        statement = statement.where(StreamTag.tag > after)
    rows = (await session.execute(statement.order_by(StreamTag.tag).limit(limit + 1))).all()
    items = [TagCount(tag, count) for tag, count in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_text_cursor(items[-1].name) if more and items else None)


async def _streams_tagged(session: AsyncSession, principal: Principal, tag: str) -> list[Stream]:
    statement = scoped(select(Stream), Stream, principal).where(
        Stream.id.in_(scoped(select(StreamTag.stream_id), StreamTag, principal).where(StreamTag.tag == tag))
    )
    streams = list((await session.execute(statement.order_by(Stream.id))).scalars())
    if not streams:
        raise NotFound("No stream of your organisation carries this tag.", code="not_found")
    return streams


def _announce_tag_change(
    session: AsyncSession, principal: Principal, streams: list[Stream], change: str
) -> None:
    # One audit entry for the tag (the caller's), one event per stream it changed: receivers follow
    # streams, not tags.
    for stream in streams:
        emit(
            session,
            EventType.STREAM_UPDATED,
            EventType.STREAM_UPDATED.payload(
                id=str(stream.id), name=stream.name, state=stream.state, change=change
            ),
            organisation_id=principal.organisation_id,
        )


async def rename_tag(session: AsyncSession, principal: Principal, old: str, new: str) -> TagCount:
    """Rename a tag on every stream. Renaming onto a tag already in use merges the two."""
    streams = await _streams_tagged(session, principal, old)
    if new == old:
        return TagCount(new, len(streams))
    ids = [stream.id for stream in streams]
    # Streams that already carry the new name just lose the old one (primary key: stream, tag).
    await session.execute(
        scoped(delete(StreamTag), StreamTag, principal).where(
            StreamTag.tag == old,
            StreamTag.stream_id.in_(
                scoped(select(StreamTag.stream_id), StreamTag, principal).where(
                    StreamTag.tag == new, StreamTag.stream_id.in_(ids)
                )
            ),
        )
    )
    await session.execute(
        scoped(update(StreamTag), StreamTag, principal)
        .where(StreamTag.tag == old)
        .values(tag=new)
        .execution_options(synchronize_session=False)
    )
    note_player_change(session, principal.organisation_id)  # player-key listings filter by tag
    total = await session.scalar(
        scoped(select(func.count()).select_from(StreamTag), StreamTag, principal).where(StreamTag.tag == new)
    )
    record(
        session,
        Actor.of(principal),
        "tag.renamed",
        organisation_id=principal.organisation_id,
        target_type="tag",
        target_id=old,
        before={"name": old},
        after={"name": new, "streams": len(ids)},
    )
    _announce_tag_change(session, principal, streams, "tags")
    return TagCount(new, int(total or 0))


async def delete_tag(session: AsyncSession, principal: Principal, name: str) -> None:
    """Take a tag off every stream of the organisation."""
    streams = await _streams_tagged(session, principal, name)
    await session.execute(
        scoped(delete(StreamTag), StreamTag, principal)
        .where(StreamTag.tag == name)
        .execution_options(synchronize_session=False)
    )
    note_player_change(session, principal.organisation_id)  # player-key listings filter by tag
    record(
        session,
        Actor.of(principal),
        "tag.deleted",
        organisation_id=principal.organisation_id,
        target_type="tag",
        target_id=name,
        before={"name": name, "streams": len(streams)},
    )
    _announce_tag_change(session, principal, streams, "tags")
