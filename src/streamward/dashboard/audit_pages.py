"""The audit log: filters, keyset pages, and the CSV download (same service and CSV writer as
``/api/audit``, behind the dashboard's cookie session)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from streamward.audit import export
from streamward.audit.models import AuditEntry
from streamward.audit.service import ACTOR_FILTER_LENGTH, AuditFilter, list_entries
from streamward.dashboard.core import Viewer, page, render
from streamward.dashboard.page_tools import list_url
from streamward.db import DbSession
from streamward.errors import InvalidTime
from streamward.pagination import DEFAULT_LIMIT
from streamward.runtime import Runtime
from streamward.schemas import column_query

router = APIRouter(include_in_schema=False)

Actor = Annotated[str | None, Query(max_length=ACTOR_FILTER_LENGTH)]
Action = Annotated[str | None, column_query(AuditEntry.action)]
TargetType = Annotated[str | None, column_query(AuditEntry.target_type, alias="target_type")]
Target = Annotated[str | None, column_query(AuditEntry.target_id)]
# Times are checked by the audit service (400 invalid_time), not here.
Since = Annotated[str | None, Query(alias="from")]
Until = Annotated[str | None, Query(alias="to")]
Cursor = Annotated[str | None, Query(max_length=64)]


def _filter(
    actor: str | None,
    action: str | None,
    target_type: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
) -> AuditFilter:
    """The page's date fields are whole days: "to" includes its day."""
    return AuditFilter.of(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target,
        since=since,
        until=until,
        whole_days=True,
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
    since: Since = None,
    until: Until = None,
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
    except InvalidTime as invalid:
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
    since: Since = None,
    until: Until = None,
) -> Response:
    """Every entry the filters select (not one page), streamed; the JSON API's writer."""
    runtime: Runtime = request.app.state.runtime
    where = _filter(actor, action, target_type, target, since, until)
    return export.csv_response(runtime.database, viewer.principal, where)
