"""The Organisation page: its Overview tab (DOMAIN.md "Overview") and the actions it offers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from streamward.dashboard.core import CheckedForm, Viewer, page, redirect, render
from streamward.dashboard.page_tools import form_values
from streamward.db import DbSession
from streamward.errors import AppError
from streamward.events import ping
from streamward.orgs import packages, webhook
from streamward.orgs import service as orgs
from streamward.orgs.player_access import set_player_token_required
from streamward.runtime import Runtime, get_runtime
from streamward.streams import tags as stream_tags

router = APIRouter(include_in_schema=False)

MAX_TAGS_SHOWN = 200
DONE = {
    "vod": "VOD public accessibility was updated.",
    "player_access": "Player access to stream info was updated.",
    "webhook_saved": "The webhook was saved.",
    "webhook_deleted": "The webhook was removed.",
    "test_delivered": "The test event was delivered (the receiver answered 2xx).",
    "test_failed": "The test event was not delivered; see the delivery log for the receiver's answer.",
}


@router.get("/")
async def home(viewer: Annotated[Viewer, page()]) -> Response:
    return redirect("/organisation/overview")


@router.get("/organisation")
async def organisation(viewer: Annotated[Viewer, page()]) -> Response:
    return redirect("/organisation/overview")


async def _overview(
    request: Request, viewer: Viewer, db: DbSession, *, status_code: int = 200, **shown_once: Any
) -> Response:
    org = viewer.organisation
    tags = (
        await stream_tags.list_tags(db, viewer.principal, limit=MAX_TAGS_SHOWN, cursor=None)
        if viewer.can("tag:read")
        else None
    )
    return render(
        request,
        "overview.html",
        status_code=status_code,
        title=f"{org.name} · Overview",
        section="organisation",
        tab="overview",
        packages=packages.describe(org.packages),
        tags=tags,
        webhook_events=webhook.SUBSCRIBABLE_EVENTS,
        **{"revealed_api_key": None, "new_webhook_secret": None, "webhook_error": None, "notice": None}
        | shown_once,
    )


@router.get("/organisation/overview")
async def overview(
    request: Request, viewer: Annotated[Viewer, page("org:read")], db: DbSession, done: str | None = None
) -> Response:
    return await _overview(request, viewer, db, notice=DONE.get(done or ""))


@router.post("/organisation/apikey/reveal")
async def reveal_api_key(
    request: Request,
    viewer: Annotated[Viewer, page("apikey:read")],
    form: CheckedForm,
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> Response:
    # A POST, not a GET: revealing is audited, and a GET must change nothing.
    api_key = await orgs.reveal_api_key_audited(db, runtime.secret_box, viewer.principal)
    return await _overview(request, viewer, db, revealed_api_key=api_key)


@router.post("/organisation/vod")
async def set_vod_visibility(
    viewer: Annotated[Viewer, page("vod:settings")], form: CheckedForm, db: DbSession
) -> Response:
    await orgs.set_vod_public(db, viewer.principal, form.get("public") == "on")
    return redirect("/organisation/overview?done=vod")


@router.post("/organisation/player-access")
async def set_player_access(
    viewer: Annotated[Viewer, page("apikey:rotate")], form: CheckedForm, db: DbSession
) -> Response:
    await set_player_token_required(db, viewer.principal, form.get("required") == "on")
    return redirect("/organisation/overview?done=player_access")


@router.post("/organisation/webhook")
async def save_webhook(
    request: Request,
    viewer: Annotated[Viewer, page("webhook:write")],
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    form: CheckedForm,
) -> Response:
    events = await form_values(request, "events")
    try:
        saved = await webhook.save(
            db,
            runtime.secret_box,
            viewer.principal,
            url=(form.get("url") or "").strip(),
            events=events,
            allow_private=runtime.settings.allow_private_webhook_targets,
            resolver=runtime.webhook_resolver,
        )
    except AppError as refused:
        return await _overview(
            request, viewer, db, status_code=refused.status_code, webhook_error=refused.message
        )
    if saved.new_secret:
        return await _overview(
            request, viewer, db, new_webhook_secret=saved.new_secret, notice=DONE["webhook_saved"]
        )
    return redirect("/organisation/overview?done=webhook_saved")


@router.post("/organisation/webhook/secret/rotate")
async def rotate_webhook_secret(
    request: Request,
    viewer: Annotated[Viewer, page("webhook:write")],
    form: CheckedForm,
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> Response:
    secret = await webhook.rotate_secret(db, runtime.secret_box, viewer.principal)
    return await _overview(request, viewer, db, new_webhook_secret=secret)


@router.post("/organisation/webhook/delete")
async def delete_webhook(
    viewer: Annotated[Viewer, page("webhook:write")], form: CheckedForm, db: DbSession
) -> Response:
    await webhook.remove(db, viewer.principal)
    return redirect("/organisation/overview?done=webhook_deleted")


@router.post("/organisation/webhook/test")
async def send_test_event(
    viewer: Annotated[Viewer, page("webhook:write")],
    form: CheckedForm,
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> Response:
    _, result = await ping.send_test_event(db, viewer.principal, runtime.secret_box, runtime.egress)
    return redirect("/organisation/overview?done=" + ("test_delivered" if result.ok else "test_failed"))
