"""The audit log: filters, keyset pages, and the CSV download (same service and CSV writer as
``/api/audit``, behind the dashboard's cookie session)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from streamward.audit import export
from streamward.audit.service import AuditFilter, list_entries
from streamward.dashboard.core import Viewer, page, render
from streamward.dashboard.page_tools import list_url
from streamward.db import DbSession
from streamward.errors import BadRequest
from streamward.pagination import DEFAULT_LIMIT
from streamward.runtime import Runtime

router = APIRouter(include_in_schema=False)

Actor = Annotated[str | None, Query(max_length=320)]
Action = Annotated[str | None, Query(max_length=64)]
TargetType = Annotated[str | None, Query(alias="target_type", max_length=32)]
Target = Annotated[str | None, Query(max_length=80)]
Day = Annotated[str | None, Query(max_length=40)]
Cursor = Annotated[str | None, Query(max_length=64)]


class InvalidDate(BadRequest):
    code = "invalid_date"
    message = "Dates are YYYY-MM-DD (UTC)."


def _moment(value: str | None, *, end_of_day: bool) -> datetime | None:
    """A date filter as a UTC instant. A bare date covers its whole day: "from" starts at its
    midnight, "to" ends at the next midnight (so both ends are inclusive days)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidDate() from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    bare_date = len(value.strip()) == len("YYYY-MM-DD")
    return moment + timedelta(days=1) if end_of_day and bare_date else moment


def _filter(
    actor: str | None,
    action: str | None,
    target_type: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
) -> AuditFilter:
    return AuditFilter(
        actor=(actor or "").strip() or None,
        action=(action or "").strip() or None,
        target_type=(target_type or "").strip() or None,
        target_id=(target or "").strip() or None,
        since=_moment(since, end_of_day=False),
        until=_moment(until, end_of_day=True),
    )


@router.get("/audit")
async def audit_log(
    request: Request,
    viewer: Annotated[Viewer, page("audit:read")],
    db: DbSession,
    actor: Actor = None,
    action: Action = None,
    target_type: TargetType = None,
    target: Target = None,
    since: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    cursor: Cursor = None,
) -> Response:
    filters = {
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target": target,
        "from": since,
        "to": until,
    }
    where: AuditFilter | None = None
    error: str | None = None
    try:
        where = _filter(actor, action, target_type, target, since, until)
    except InvalidDate as invalid:
        error = invalid.message
    entries = (
        await list_entries(db, viewer.principal, where, limit=DEFAULT_LIMIT, cursor=cursor)
        if where is not None
        else None
    )
    return render(
        request,
        "audit.html",
        status_code=400 if error else 200,
        title="Audit log",
        section="audit",
        filters={key: value or "" for key, value in filters.items()},
        entries=entries.items if entries else [],
        error=error,
        filtered=any(filters.values()),
        cursor=cursor,
        first_url=list_url("/audit", **filters),
        next_url=list_url("/audit", **filters, cursor=entries.next_cursor)
        if entries and entries.next_cursor
        else None,
        csv_url=list_url("/audit/export.csv", **filters),
    )


@router.get("/audit/export.csv")
async def audit_csv(
    request: Request,
    viewer: Annotated[Viewer, page("audit:read")],
    actor: Actor = None,
    action: Action = None,
    target_type: TargetType = None,
    target: Target = None,
    since: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    until: Annotated[str | None, Query(alias="to", max_length=40)] = None,
) -> Response:
    """Every entry the filters select (not one page), streamed; the JSON API's writer."""
    runtime: Runtime = request.app.state.runtime
    where = _filter(actor, action, target_type, target, since, until)
    return export.csv_response(runtime.database, viewer.principal, where)
