"""The audit log as CSV: one writer for the JSON API's ``format=csv`` and the dashboard's download."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import StreamingResponse

from streamward.audit.models import AuditEntry
from streamward.audit.service import AuditFilter, iter_entries
from streamward.authz.principal import Principal
from streamward.db import Database
from streamward.schemas import format_utc

CSV_COLUMNS = (
    "id",
    "createdAt",
    "actor",
    "actorEmail",
    "action",
    "targetType",
    "targetId",
    "before",
    "after",
    "clientAddress",
    "requestId",
)
# A cell starting with one of these is a formula to a spreadsheet; some cells hold what a client
# typed (an email at login, say), so they are defused with a leading apostrophe.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        value = json.dumps(value, separators=(",", ":"), sort_keys=True)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_row(entry: AuditEntry) -> list[str]:
    values = (
        entry.id,
        format_utc(entry.created_at),
        entry.actor,
        entry.actor_email,
        entry.action,
        entry.target_type,
        entry.target_id,
        entry.before,
        entry.after,
        entry.client_address,
        entry.request_id,
    )
    return [_cell(value) for value in values]


def _csv_text(rows: Iterable[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def csv_chunks(database: Database, principal: Principal, where: AuditFilter) -> AsyncIterator[str]:
    """The header row, then every matching entry (newest first), batch by batch."""
    yield _csv_text([list(CSV_COLUMNS)])
    async for batch in iter_entries(database, principal, where):
        yield _csv_text(csv_row(entry) for entry in batch)


def csv_response(database: Database, principal: Principal, where: AuditFilter) -> StreamingResponse:
    """The whole selection as a CSV download, streamed in bounded memory."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        csv_chunks(database, principal, where),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )
