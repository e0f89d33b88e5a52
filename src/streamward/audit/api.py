"""The audit log: who changed what, and every login attempt; as JSON pages or one CSV export."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from streamward.audit.export import csv_response
from streamward.audit.schemas import AuditEntryOut, AuditPage
from streamward.audit.service import AuditFilter, list_entries
from streamward.authz.deps import require
from streamward.authz.principal import Principal
from streamward.db import DbSession
from streamward.pagination import DEFAULT_LIMIT, MAX_LIMIT
from streamward.runtime import Runtime, get_runtime

router = APIRouter(prefix="/api/audit", tags=["audit"])


def _as_utc(value: datetime | None) -> datetime | None:
    """A time without offset is taken as UTC (the log's time zone)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get(
    "",
    response_model=AuditPage,
    summary="The organisation's audit log, newest first (JSON pages, or the whole selection as CSV)",
    responses={200: {"content": {"text/csv": {}}, "description": "JSON page, or CSV with format=csv"}},
)
async def read_audit_log(
    principal: Annotated[Principal, require("audit:read")],
    db: DbSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    actor: Annotated[
        str | None, Query(max_length=320, description="Actor (user:<id>, apikey, anonymous) or their email.")
    ] = None,
    action: Annotated[str | None, Query(max_length=64, examples=["user.role_changed"])] = None,
    target_type: Annotated[str | None, Query(alias="targetType", max_length=32, examples=["user"])] = None,
    target: Annotated[str | None, Query(max_length=80, description="Target id.")] = None,
    since: Annotated[datetime | None, Query(alias="from", description="From this time (inclusive).")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="Until this time (exclusive).")] = None,
    format: Annotated[
        Literal["json", "csv"], Query(description="csv: every matching entry, not one page.")
    ] = "json",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditPage | Response:
    where = AuditFilter(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target,
        since=_as_utc(since),
        until=_as_utc(until),
    )
    if format == "csv":
        return csv_response(runtime.database, principal, where)
    page = await list_entries(db, principal, where, limit=limit, cursor=cursor)
    return AuditPage(
        items=[AuditEntryOut.model_validate(entry) for entry in page.items], next_cursor=page.next_cursor
    )
