"""``/api/ingest/*``: where media servers report stream events. Authenticated by the shared
ingest secret (header ``X-Ingest-Secret``); the whole API is off while no secret is configured."""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from streamward.errors import BadRequest, NotFound, TooDeep, Unauthenticated
from streamward.ingest import service as ingest
from streamward.ingest.service import Call, IngestReport
from streamward.web.access import access_rule
from streamward.web.params import RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, writes

INGEST_SECRET_HEADER = "X-Ingest-Secret"


@access_rule("ingest")
async def _media_server(request: Request, runtime: RuntimeDep) -> None:
    configured = runtime.settings.ingest_secret
    if configured is None:
        raise NotFound("Ingest is not enabled on this server.", code="ingest_disabled")
    presented = request.headers.get(INGEST_SECRET_HEADER, "")
    if not hmac.compare_digest(presented.encode(), configured.get_secret_value().encode()):
        raise Unauthenticated(f"Send the ingest secret in {INGEST_SECRET_HEADER}.")


MEDIA_SERVER = Depends(_media_server)
router = Router(prefix="/api/ingest", tags=["media-server ingest"], dependencies=[MEDIA_SERVER])


async def _fields(request: Request) -> dict[str, str]:
    """The documented form body, or the same fields as a JSON object."""
    if request.headers.get("content-type", "").startswith("application/json"):
        # streamward.edge has refused deep or control-laden JSON already; parsed defensively anyway.
        try:
            body: Any = json.loads(await request.body())
        except RecursionError:
            raise TooDeep() from None
        except ValueError:
            raise BadRequest("The request body is not valid JSON.", code="malformed_json") from None
        if not isinstance(body, dict):
            raise BadRequest("Send the fields as a JSON object.", code="validation_error")
        return {str(k): str(v) for k, v in body.items() if isinstance(v, str | int | float)}
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _report(request: Request, call: Call) -> IngestReport:
    fields = await _fields(request)
    if fields.get("call", call) != call:
        raise BadRequest(f"This endpoint takes call={call}.", code="wrong_call")
    report = IngestReport.of(call, fields)
    if not report.stream_name:
        raise BadRequest("The stream name (name) is missing.", code="validation_error")
    return report


def _allowed(stream_state: str) -> JSONResponse:
    return JSONResponse({"allowed": True, "state": stream_state})


@router.post("/publish", summary="A broadcaster started: allowed (200) or rejected (403)")
@writes
async def publish(request: Request, db: DbSession, runtime: RuntimeDep) -> JSONResponse:
    report = await _report(request, "publish")
    allowed, why = await ingest.ask_webhook(
        runtime.database,
        runtime.secret_box,
        runtime.egress,
        report,
        runtime.settings.publish_webhook_timeout_seconds,
    )
    stream = await ingest.publish(db, report, allowed=allowed, why=why)
    return _allowed(stream.state)


@router.post("/update_publish", summary="Periodic report while live (forwarded through the outbox)")
@writes
async def update_publish(request: Request, db: DbSession) -> JSONResponse:
    stream = await ingest.update_publish(db, await _report(request, "update_publish"))
    return _allowed(stream.state)


@router.post("/publish_done", summary="The broadcast ended")
@writes
async def publish_done(request: Request, db: DbSession, runtime: RuntimeDep) -> JSONResponse:
    stream = await ingest.publish_done(db, runtime.settings, await _report(request, "publish_done"))
    return _allowed(stream.state)
