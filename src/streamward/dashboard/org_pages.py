"""The Organisation page: its Overview tab (DOMAIN.md "Overview") and the actions it offers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Request
from fastapi.responses import Response

from streamward.dashboard.core import CheckedForm, Viewer, flash_redirect, page, redirect, render
from streamward.dashboard.page_tools import form_values
from streamward.errors import AppError
from streamward.orgs import packages
from streamward.orgs import service as orgs
from streamward.orgs.player_access import set_player_token_required
from streamward.streams import tags as stream_tags
from streamward.web.params import RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, note_refusal, reads, writes
from streamward.webhooks import config as webhook
from streamward.webhooks import ping

router = Router(include_in_schema=False)

MAX_TAGS_SHOWN = 200


# A secret shown once (the revealed API key, a new webhook signing secret) is not rendered on the
# POST's own response: a reload would submit the POST again (a second audited reveal; a second
# rotation silently replacing the secret just shown). Nor does it travel in a URL, where history,
# logs and Referer headers keep it. The POST answers 303 to the overview and hands the secret over
# in the dashboard's one flash cookie (core.flash: sealed with AES-GCM, HttpOnly, bound to this
# session, two minutes at most, cleared by the page that shows it). Pages are sent with
# Cache-Control: no-store, so neither a reload nor Back brings it back: the API key can be revealed
# again (audited), the webhook secret rotated again.
OVERVIEW = "/organisation/overview"


def _show_once(request: Request, text: str, **secret: str) -> Response:
    return flash_redirect(request, OVERVIEW, "success", text, data=secret)


@router.get("/")
@reads
async def home(viewer: Annotated[Viewer, page()]) -> Response:
    return redirect("/organisation/overview")


@router.get("/organisation")
@reads
async def organisation(viewer: Annotated[Viewer, page()]) -> Response:
    return redirect("/organisation/overview")


async def _overview(
    request: Request,
    viewer: Viewer,
    db: DbSession,
    *,
    status_code: int = 200,
    webhook_error: str | None = None,
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
        webhook_error=webhook_error,
    )


@router.get("/organisation/overview")
@reads
async def overview(
    request: Request,
    viewer: Annotated[Viewer, page("org:read")],
    db: DbSession,
) -> Response:
    return await _overview(request, viewer, db)


@router.post("/organisation/apikey/reveal")
@writes
async def reveal_api_key(
    request: Request,
    viewer: Annotated[Viewer, page("apikey:read")],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    # A POST, not a GET: revealing is audited, and a GET must change nothing.
    api_key = await orgs.reveal_api_key_audited(db, runtime.secret_box, viewer.principal)
    return _show_once(
        request,
        "The API key is shown below, this once: reloading or leaving the page hides it again.",
        revealed_api_key=api_key,
    )


@router.post("/organisation/vod")
@writes
async def set_vod_visibility(
    request: Request, viewer: Annotated[Viewer, page("vod:settings")], form: CheckedForm, db: DbSession
) -> Response:
    public = form.get("public") == "on"
    await orgs.set_vod_public(db, viewer.principal, public)
    if public:
        return flash_redirect(
            request, OVERVIEW, "warn", "VOD content is now public: it can be read without credentials."
        )
    return flash_redirect(
        request, OVERVIEW, "success", "VOD content is private again: reading it needs credentials."
    )


@router.post("/organisation/mfa-policy")
@writes
async def set_mfa_policy(
    request: Request, viewer: Annotated[Viewer, page("org:mfa_policy")], form: CheckedForm, db: DbSession
) -> Response:
    # The API's PUT /api/organisation/mfa-policy: the same service, audit entry included.
    required = await orgs.set_mfa_required(db, viewer.principal, form.get("required") == "on")
    if required:
        return flash_redirect(
            request,
            OVERVIEW,
            "success",
            "Every member now needs a second factor: those without one can only set one up until they do.",
        )
    return flash_redirect(request, OVERVIEW, "success", "A second factor is no longer required of members.")


@router.post("/organisation/player-access")
@writes
async def set_player_access(
    request: Request, viewer: Annotated[Viewer, page("apikey:rotate")], form: CheckedForm, db: DbSession
) -> Response:
    required = form.get("required") == "on"
    await set_player_token_required(db, viewer.principal, required)
    said = (
        "Players now need a playback token to read stream info."
        if required
        else "Players read stream info without a playback token again."
    )
    return flash_redirect(request, OVERVIEW, "success", said)


@router.post("/organisation/webhook")
@writes
async def save_webhook(
    request: Request,
    viewer: Annotated[Viewer, page("webhook:write")],
    db: DbSession,
    runtime: RuntimeDep,
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
        note_refusal(request, refused)
        return await _overview(
            request, viewer, db, status_code=refused.status_code, webhook_error=refused.message
        )
    if saved.new_secret:
        return _show_once(
            request,
            "The webhook was saved with a new signing secret: copy it below now, it is shown only once.",
            new_webhook_secret=saved.new_secret,
        )
    return flash_redirect(request, OVERVIEW, "success", "The webhook was saved.")


@router.post("/organisation/webhook/secret/rotate")
@writes
async def rotate_webhook_secret(
    request: Request,
    viewer: Annotated[Viewer, page("webhook:write")],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    secret = await webhook.rotate_secret(db, runtime.secret_box, viewer.principal)
    return _show_once(
        request,
        "The webhook signing secret was rotated: copy the new one below into your receivers now, "
        "it is shown only once.",
        new_webhook_secret=secret,
    )


@router.post("/organisation/webhook/delete")
@writes
async def delete_webhook(
    request: Request, viewer: Annotated[Viewer, page("webhook:write")], form: CheckedForm, db: DbSession
) -> Response:
    await webhook.remove(db, viewer.principal)
    return flash_redirect(
        request,
        OVERVIEW,
        "success",
        "The webhook was removed: no events are sent, streams start without asking.",
    )


@router.post("/organisation/webhook/test")
@writes
async def send_test_event(
    request: Request,
    viewer: Annotated[Viewer, page("webhook:write")],
    form: CheckedForm,
    db: DbSession,
    runtime: RuntimeDep,
) -> Response:
    _, outcome = await ping.send_test_event(db, viewer.principal, runtime.secret_box, runtime.egress)
    if outcome.delivered:
        return flash_redirect(
            request, OVERVIEW, "success", f"The test event was delivered: {outcome.answer}."
        )
    # Never a success banner for a failure: say what happened, as the delivery log records it.
    return flash_redirect(
        request,
        OVERVIEW,
        "danger",
        f"The test event was not delivered: {outcome.answer}. The delivery log has every attempt.",
    )
