"""Streams: the list (tag and state filters, keyset pages), create, one stream with its tags, and
the lifecycle buttons (stop, lock, unlock, delete). The lifecycle table and every check are the
streams service's; this module only offers what that table allows from a stream's state."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from streamward.dashboard.core import CheckedForm, Viewer, flash_redirect, page, render
from streamward.dashboard.page_tools import form_values, lines, list_url, validation_message
from streamward.errors import AppError, NotFound
from streamward.orgs.packages import has_package
from streamward.pagination import DEFAULT_LIMIT
from streamward.runtime import Runtime
from streamward.streams import service as streams
from streamward.streams import tags as stream_tags
from streamward.streams.lifecycle import TRANSITIONS, StreamAction, StreamEdit, StreamStateConflict, may_edit
from streamward.streams.models import Stream, StreamState
from streamward.streams.playout import Addresses, renditions_of
from streamward.streams.schemas import StreamCreate, StreamTagsUpdate
from streamward.streams.transcode import COMMON_PROFILES
from streamward.web.params import Cursor
from streamward.web.routing import Router
from streamward.web.session import DbSession, note_refusal, reads, writes

router = Router(include_in_schema=False)

MAX_TAG_OPTIONS = 200
# The actions a person may take from the dashboard (publishing is the media server's).
BUTTONS = (StreamAction.STOP, StreamAction.LOCK, StreamAction.UNLOCK, StreamAction.DELETE)
STATE_BADGES = {
    StreamState.CREATED: "badge-neutral",
    StreamState.LIVE: "badge-ok",
    StreamState.ENDED: "badge-neutral",
    StreamState.LOCKED: "badge-warn",
    StreamState.DELETED: "badge-danger",
}
DONE = {
    StreamAction.STOP: "The stream {} was stopped.",
    StreamAction.LOCK: "The stream {} was locked: it cannot go live or be deleted until unlocked.",
    StreamAction.UNLOCK: "The stream {} was unlocked.",
    StreamAction.DELETE: "The stream {} was deleted.",
}
STATE_CONFLICT = (
    "Nothing was changed: that action does not fit the stream's current state "
    "(it may have changed meanwhile)."
)
STOP_WARNING = "The broadcast ends now; viewers stop receiving it. The broadcaster can publish again later."
DELETE_WARNING = (
    "The stream is deleted for good: it cannot be published to any more and loses its tags. "
    "Playback tokens for it stop being useful."
)
_LABELS = {"tags": "Tags", "transcodes": "Transcodes", "groupId": "Group id"}
_HINTS = {"groupId": "1 to 64 letters, digits, '.', '_', ':' or '-'"}


@dataclass(frozen=True)
class PlayoutLink:
    name: str
    url: str


def playout_links(stream: Stream, addresses: Addresses) -> list[PlayoutLink]:
    """What the page offers to copy: each rendition's HLS and RTMP playout (the bintu object's
    playout.hls[i] and playout.rtmp[i]), passthrough first."""
    links = []
    for r in renditions_of(stream):
        links.append(PlayoutLink(f"HLS, {r.label}", f"{addresses.hls_base}/{r.streamname}/index.m3u8"))
        links.append(PlayoutLink(f"RTMP, {r.label}", f"{addresses.playout_rtmp}/{r.streamname}"))
    return links


def _stream_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such stream.") from None


def _state(value: str | None) -> StreamState | None:
    try:
        return StreamState(value) if value else None
    except ValueError:
        return None


def allowed_actions(stream: Stream) -> list[str]:
    """The buttons the lifecycle table allows from the stream's state (the service decides anyway)."""
    state = StreamState(stream.state)
    return [action.value for action in BUTTONS if state in TRANSITIONS[action]]


@router.get("/streams")
@reads
async def stream_list(
    request: Request,
    viewer: Annotated[Viewer, page("stream:read")],
    db: DbSession,
    tag: Cursor = None,
    state: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Cursor = None,
) -> Response:
    tag = (tag or "").strip() or None
    chosen = _state(state)
    listed = await streams.list_streams(
        db,
        viewer.principal,
        tags=[tag] if tag else [],
        state=chosen,
        group_id=None,
        limit=DEFAULT_LIMIT,
        cursor=cursor,
    )
    tag_options = (
        (await stream_tags.list_tags(db, viewer.principal, limit=MAX_TAG_OPTIONS, cursor=None)).items
        if viewer.can("tag:read")
        else []
    )
    filters = {"tag": tag, "state": chosen.value if chosen else None}
    return render(
        request,
        "streams.html",
        title="Streams",
        section="streams",
        rows=listed.items,
        actions={view.stream.id: allowed_actions(view.stream) for view in listed.items},
        states=list(StreamState),
        badges=STATE_BADGES,
        tag_filter=tag or "",
        state_filter=chosen.value if chosen else "",
        tag_options=tag_options,
        filtered=any(filters.values()),
        cursor=cursor,
        first_url=list_url("/streams", **filters),
        next_url=list_url("/streams", **filters, cursor=listed.next_cursor) if listed.next_cursor else None,
        stop_warning=STOP_WARNING,
        delete_warning=DELETE_WARNING,
    )


def _create_page(
    request: Request,
    viewer: Viewer,
    *,
    tags: str = "",
    transcodes: list[str] | None = None,
    group_id: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "stream_new.html",
        status_code=status_code,
        title="New stream",
        section="streams",
        tags=tags,
        transcodes=transcodes or [],
        profiles=COMMON_PROFILES,
        can_transcode=has_package(viewer.organisation.packages, "transcoding"),
        group_id=group_id,
        error=error,
    )


@router.get("/streams/new")
@reads
async def stream_new(request: Request, viewer: Annotated[Viewer, page("stream:create")]) -> Response:
    return _create_page(request, viewer)


@router.post("/streams")
@writes
async def stream_create(
    request: Request, viewer: Annotated[Viewer, page("stream:create")], form: CheckedForm, db: DbSession
) -> Response:
    tags, group_id = form.get("tags", ""), form.get("group_id", "").strip()
    transcodes = await form_values(request, "transcode")

    def again(error: str, status_code: int) -> Response:
        return _create_page(
            request,
            viewer,
            tags=tags,
            transcodes=transcodes,
            group_id=group_id,
            error=error,
            status_code=status_code,
        )

    try:
        body = StreamCreate.model_validate(
            {"tags": lines(tags), "transcodes": transcodes, "group_id": group_id or None}
        )
    except ValidationError as invalid:
        return again(validation_message(invalid, _LABELS, _HINTS), 422)
    try:
        async with db.begin_nested():  # a refusal undoes only what this call did
            created = await streams.create_stream(
                db,
                viewer.principal,
                tags=body.tags,
                transcodes=body.transcode_requests(),
                group_id=body.group_id,
            )
    except AppError as refused:
        note_refusal(request, refused)
        return again(refused.message, refused.status_code)
    name = created.stream.name
    return flash_redirect(
        request,
        f"/streams/{created.stream.id}",
        "success",
        f"The stream {name} was created: point your broadcaster at the ingest URL below.",
    )


async def _detail_page(
    request: Request,
    viewer: Viewer,
    db: DbSession,
    stream_id: uuid.UUID,
    *,
    tags: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    runtime: Runtime = request.app.state.runtime
    view = await streams.read_stream(db, viewer.principal, stream_id)
    return render(
        request,
        "stream.html",
        status_code=status_code,
        title=f"Stream {view.stream.name}",
        section="streams",
        view=view,
        stream=view.stream,
        badges=STATE_BADGES,
        actions=allowed_actions(view.stream),
        taggable=may_edit(view.stream, StreamEdit.TAG),  # the form only where the service allows it
        tags="\n".join(view.tags) if tags is None else tags,
        ingest_url=runtime.settings.ingest_rtmp_url,
        playout=playout_links(view.stream, Addresses.of(runtime.settings)),
        profiles=[t["profile"] for t in view.stream.transcodes],
        error=error,
        stop_warning=STOP_WARNING,
        delete_warning=DELETE_WARNING,
    )


@router.get("/streams/{stream_id}")
@reads
async def stream_detail(
    request: Request, stream_id: str, viewer: Annotated[Viewer, page("stream:read")], db: DbSession
) -> Response:
    return await _detail_page(request, viewer, db, _stream_id(stream_id))


@router.post("/streams/{stream_id}/tags")
@writes
async def stream_tags_update(
    request: Request,
    stream_id: str,
    viewer: Annotated[Viewer, page("tag:write")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    target, tags = _stream_id(stream_id), form.get("tags", "")
    try:
        body = StreamTagsUpdate.model_validate({"tags": lines(tags)})
    except ValidationError as invalid:
        message = validation_message(invalid, _LABELS)
        return await _detail_page(request, viewer, db, target, tags=tags, error=message, status_code=422)
    try:
        async with db.begin_nested():
            saved = await streams.set_stream_tags(db, viewer.principal, target, body.tags)
    except AppError as refused:  # the page shows the refusal (a stream gone meanwhile: not found)
        note_refusal(request, refused)
        return await _detail_page(
            request, viewer, db, target, tags=tags, error=refused.message, status_code=refused.status_code
        )
    return flash_redirect(
        request, f"/streams/{target}", "success", f"The tags of {saved.stream.name} were saved."
    )


async def _act(
    request: Request, db: DbSession, viewer: Viewer, stream_id: str, action: StreamAction
) -> Response:
    try:
        async with db.begin_nested():
            acted = await streams.act_on_stream(db, viewer.principal, _stream_id(stream_id), action)
    except StreamStateConflict:
        return flash_redirect(request, "/streams", "danger", STATE_CONFLICT)
    return flash_redirect(request, "/streams", "success", DONE[action].format(acted.stream.name))


@router.post("/streams/{stream_id}/stop")
@writes
async def stream_stop(
    request: Request,
    stream_id: str,
    viewer: Annotated[Viewer, page("stream:manage")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    return await _act(request, db, viewer, stream_id, StreamAction.STOP)


@router.post("/streams/{stream_id}/lock")
@writes
async def stream_lock(
    request: Request,
    stream_id: str,
    viewer: Annotated[Viewer, page("stream:manage")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    return await _act(request, db, viewer, stream_id, StreamAction.LOCK)


@router.post("/streams/{stream_id}/unlock")
@writes
async def stream_unlock(
    request: Request,
    stream_id: str,
    viewer: Annotated[Viewer, page("stream:manage")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    return await _act(request, db, viewer, stream_id, StreamAction.UNLOCK)


@router.post("/streams/{stream_id}/delete")
@writes
async def stream_delete(
    request: Request,
    stream_id: str,
    viewer: Annotated[Viewer, page("stream:manage")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    return await _act(request, db, viewer, stream_id, StreamAction.DELETE)
