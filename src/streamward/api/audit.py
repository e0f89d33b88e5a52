"""The audit log: who changed what, and every login attempt; as JSON pages or one CSV export."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Response

from streamward.audit.export import csv_response
from streamward.audit.models import AuditEntry
from streamward.audit.schemas import AuditEntryOut, AuditPage
from streamward.audit.service import ACTOR_FILTER_LENGTH, AuditFilter, list_entries
from streamward.authz.principal import Principal
from streamward.pagination import DEFAULT_LIMIT
from streamward.schemas import column_query
from streamward.web.access import require
from streamward.web.params import Cursor, Limit, RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads

router = Router(prefix="/api/audit", tags=["audit"])


@router.get(
    "",
    response_model=AuditPage,
    summary="The organisation's audit log, newest first (JSON pages, or the whole selection as CSV)",
    responses={200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV with format=csv"}},
)
@reads
async def read_audit_log(
    principal: Annotated[Principal, require("audit:read")],
    db: DbSession,
    runtime: RuntimeDep,
    actor: Annotated[
        str | None,
        Query(
            max_length=ACTOR_FILTER_LENGTH,
            description="Actor (user:<id>, apikey, anonymous) or their email.",
        ),
    ] = None,
    action: Annotated[str | None, column_query(AuditEntry.action, examples=["user.role_changed"])] = None,
    target_type: Annotated[
        str | None, column_query(AuditEntry.target_type, alias="targetType", examples=["user"])
    ] = None,
    target: Annotated[str | None, column_query(AuditEntry.target_id, description="Target id.")] = None,
    since: Annotated[
        str | None,
        Query(
            alias="from",
            description="From this time (inclusive), ISO 8601; UTC when no offset.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            alias="to",
            description="Until this time (exclusive), ISO 8601; UTC when no offset.",
        ),
    ] = None,
    format: Annotated[
        Literal["json", "csv"], Query(description="csv: every matching entry, not one page.")
    ] = "json",
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> AuditPage | Response:
    # Parsed (and refused) before anything is read: the CSV's 200 is sent before its first row.
    where = AuditFilter.of(
        actor=actor, action=action, target_type=target_type, target_id=target, since=since, until=until
    )
    if format == "csv":
        return csv_response(runtime.database, principal, where)
    page = await list_entries(db, principal, where, limit=limit, cursor=cursor)
    return AuditPage(
        items=[AuditEntryOut.model_validate(entry) for entry in page.items], next_cursor=page.next_cursor
    )
