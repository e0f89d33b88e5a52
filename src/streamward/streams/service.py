"""Streams: creation, reads (a tenant's list, one stream, a player's stream or group) and the tags
of one stream. The lifecycle and what each state allows are lifecycle.py's; transcoded renditions
are transcode.py's, the push URL push.py's.
"""

from __future__ import annotations

import functools
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Text, bindparam, cast, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record_change
from streamward.authz.principal import Principal
from streamward.authz.scoping import Tenant, get_scoped, scoped_rows, scoped_template
from streamward.db import (
    LookupSource,
    PreparedSelect,
    detached,
    dialect_name,
    json_text_array,
    loaded_columns,
    utcnow,
)
from streamward.errors import NotFound
from streamward.events.catalogue import EventType
from streamward.kept import KeptBy
from streamward.orgs.models import Organisation, organisation_of
from streamward.orgs.packages import require_package
from streamward.pagination import Page, keyset_rows, keyset_template, keyset_values
from streamward.streams.lifecycle import PLAYABLE_STATES, StreamAction, StreamEdit, apply_action, check_edit
from streamward.streams.models import Stream, StreamState, StreamTag
from streamward.streams.tags import replace_tags, tags_of
from streamward.streams.transcode import TranscodeRequest, plan_renditions

_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_NAME_ATTEMPTS = 3


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
    # The stream's row exactly as read (every column; the transcodes as their JSON text), for a
    # listing: what the stream object is built from, so what a surface built of it may be kept by it.
    # None where the stream was loaded otherwise.
    row: tuple[Any, ...] | None = None


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
    record_change(
        session,
        principal,
        "stream.created",
        organisation_id=principal.organisation_id,
        target_type="stream",
        target_id=stream.id,
        event=EventType.STREAM_CREATED,
        payload=EventType.STREAM_CREATED.payload(
            id=str(stream.id), name=stream.name, state=stream.state, tags=stored_tags
        ),
        after={
            "name": stream.name,
            "tags": stored_tags,
            "transcodes": [t.profile for t in transcodes],
            "groupId": group_id,
            "type": stream_type,
        },
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


# A listing reads the transcodes as the JSON text the database holds (decoded below): with it, every
# value of the row is hashable, and the row itself is the key of what is built from it (StreamView.row).
_LISTED_COLUMNS = [
    cast(Stream.transcodes, Text).label(column.key) if column.key == "transcodes" else column
    for column in loaded_columns(Stream)
]
_LISTED_NAMES = tuple(column.key for column in _LISTED_COLUMNS)
# Each listed row's tags, as the text of a JSON array, in the row itself: no second query per page.
_LISTED_TAGS = (
    select(json_text_array(StreamTag.tag))
    .where(StreamTag.stream_id == Stream.id)
    .scalar_subquery()
    .label("tags")
)
_STREAM_ID = _LISTED_NAMES.index("id")

# Listed streams by the row they were made from (kept.KeptBy): made anew for every listing, fifty
# rows' JSON and instances were a fifth of a listing's CPU. One is shared by every listing that
# reads the same row; like every detached instance it is read-only, and the view is frozen.
_listed_streams: KeptBy[tuple[Any, ...], StreamView] = KeptBy(2048)


def _listed(values: tuple[Any, ...], *, sort_tags: bool) -> StreamView:
    """The stream and tags a listing's row holds (its ``_LISTED_COLUMNS``, then its tags), with the
    row itself (``StreamView.row``). The tags come in the database's order of its collation, as
    ``tags_of`` reads them, except on SQLite (``sort_tags``), whose aggregate promises no order:
    there they are sorted by code point, which is what SQLite's own ``ORDER BY`` does."""
    *stream_values, tags_json = values
    columns = dict(zip(_LISTED_NAMES, stream_values, strict=True))
    columns["transcodes"] = json.loads(columns["transcodes"] or "[]")
    tags = json.loads(tags_json)
    if sort_tags:
        tags.sort()
    return StreamView(detached(Stream, columns), tags, row=values)


# The stream list's statement for each shape it is asked in (db.PreparedSelect): built once.
_stream_lists: dict[tuple[Any, ...], PreparedSelect] = {}


def _streams_list(
    *, playable_only: bool, by_state: bool, by_group: bool, tag_count: int, after_cursor: bool
) -> PreparedSelect:
    shape = (playable_only, by_state, by_group, tag_count, after_cursor)
    prepared = _stream_lists.get(shape)
    if prepared is None:
        statement = scoped_template(select(*_LISTED_COLUMNS, _LISTED_TAGS), Stream)
        if playable_only:  # as constants: an IN list would be expanded at every execution
            statement = statement.where(or_(*(Stream.state == state for state in PLAYABLE_STATES)))
        if by_state:
            statement = statement.where(Stream.state == bindparam("state"))
        else:
            statement = statement.where(Stream.state != StreamState.DELETED.value)
        if by_group:
            statement = statement.where(Stream.group_id == bindparam("group_id"))
        for n in range(tag_count):
            statement = statement.where(
                exists().where(StreamTag.stream_id == Stream.id, StreamTag.tag == bindparam(f"tag_{n}"))
            )
        template = keyset_template(statement, Stream.id, after_cursor=after_cursor)
        prepared = _stream_lists[shape] = PreparedSelect(template)
    return prepared


async def list_streams(
    source: LookupSource,
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
    them. ``playable_only`` (players): locked and deleted streams are never listed. One statement,
    the rows' tags included; the streams are detached instances (db.detached): only presented."""
    wanted_tags = list(dict.fromkeys(tags))
    template = _streams_list(
        playable_only=playable_only,
        by_state=state is not None,
        by_group=group_id is not None,
        tag_count=len(wanted_tags),
        after_cursor=bool(cursor),
    )
    values = keyset_values(limit, cursor)
    if state is not None:
        values["state"] = state.value
    if group_id is not None:
        values["group_id"] = group_id
    values |= {f"tag_{n}": tag for n, tag in enumerate(wanted_tags)}
    page = keyset_rows(await scoped_rows(source, template, principal, values), limit, id_position=_STREAM_ID)
    listed = functools.partial(_listed, sort_tags=dialect_name(source) == "sqlite")
    return Page([_listed_streams.get(tuple(row), listed) for row in page.items], page.next_cursor)


async def set_stream_tags(
    session: AsyncSession, principal: Principal, stream_id: uuid.UUID | str, tags: list[str]
) -> StreamView:
    stream = await get_stream(session, principal, stream_id, for_update=True)
    check_edit(stream, StreamEdit.TAG)
    before = (await tags_of(session, [stream.id]))[stream.id]
    after = await replace_tags(session, stream, before, tags)
    if after != before:
        stream.updated_at = utcnow()
        record_change(
            session,
            principal,
            "stream.tags_updated",
            organisation_id=principal.organisation_id,
            target_type="stream",
            target_id=stream.id,
            event=EventType.STREAM_UPDATED,
            payload=EventType.STREAM_UPDATED.payload(
                id=str(stream.id), name=stream.name, state=stream.state, change="tags", tags=after
            ),
            before={"tags": before},
            after={"tags": after},
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
