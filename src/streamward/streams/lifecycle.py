"""The stream lifecycle, in one place: the table of transitions (``TRANSITIONS``), the one function
that applies it (``apply_action``), and what a state allows besides its transitions (``EDITS``).

The JSON API and the dashboard use it for stop/lock/unlock/delete, media-server ingest for
``publish``/``publish_done``; tags and the push URL ask ``check_edit`` before they change. Anything
the tables do not allow is refused with 409 ``stream_state_conflict``.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import Actor, record_change
from streamward.db import utcnow
from streamward.errors import Conflict
from streamward.events.catalogue import EventType
from streamward.streams.models import Stream, StreamState, StreamTag
from streamward.streams.player_cache import note_player_change

# Streams a player may see; locked and deleted ones do not exist for it.
PLAYABLE_STATES = (StreamState.CREATED.value, StreamState.LIVE.value, StreamState.ENDED.value)


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


class StreamEdit(StrEnum):
    """Changes that leave the state as it is."""

    TAG = "tag"
    PUSH_URL = "push_url"


# The states that allow each edit: a deleted stream stays only as a record, so it can be neither
# tagged nor restreamed.
_LIVING = frozenset(state for state in StreamState if state is not StreamState.DELETED)
EDITS: dict[StreamEdit, frozenset[StreamState]] = {StreamEdit.TAG: _LIVING, StreamEdit.PUSH_URL: _LIVING}

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
    StreamEdit.TAG: "tagged",
    StreamEdit.PUSH_URL: "restreamed",
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


class StreamEditConflict(Conflict):
    code = "stream_state_conflict"

    def __init__(self, edit: StreamEdit, state: StreamState) -> None:
        super().__init__(
            f"A {state.value} stream cannot be {_PAST_TENSE[edit]}.",
            details={"state": state.value, "action": edit.value},
        )


def may_edit(stream: Stream, edit: StreamEdit) -> bool:
    return StreamState(stream.state) in EDITS[edit]


def check_edit(stream: Stream, edit: StreamEdit) -> None:
    """Raises StreamEditConflict when the stream's state does not allow ``edit``."""
    if not may_edit(stream, edit):
        raise StreamEditConflict(edit, StreamState(stream.state))


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
    fields = {"id": str(stream.id), "name": stream.name, "state": after.value, "previousState": before.value}
    # Players stop seeing a locked or deleted stream, and see the new state of any other, at once
    # in this process (and within the player-read cache's second in the others).
    note_player_change(session, stream.organisation_id)
    if after is StreamState.DELETED:
        # A deleted stream uses no tag any more (the overview's tag counts drop at once).
        await session.execute(delete(StreamTag).where(StreamTag.stream_id == stream.id))
        event = EventType.STREAM_DELETED
        payload = event.payload(**fields)
    else:
        event = EventType.STREAM_UPDATED
        payload = event.payload(**fields, change=action.value)
    record_change(
        session,
        actor,
        _AUDIT_ACTIONS[action],
        organisation_id=stream.organisation_id,
        target_type="stream",
        target_id=stream.id,
        event=event,
        payload=payload,
        before={"state": before.value},
        after={"state": after.value},
    )
    await session.flush()
    return stream
