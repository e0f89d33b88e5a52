"""The webhook delivery log: every attempt, filtered by status and event type, and redelivery."""

from __future__ import annotations

import uuid
from typing import Annotated, get_args

from fastapi import Query, Request
from fastapi.responses import Response

from streamward.dashboard.core import CheckedForm, Viewer, flash_redirect, page, render
from streamward.dashboard.page_tools import list_url
from streamward.errors import NotFound
from streamward.pagination import DEFAULT_LIMIT
from streamward.web.params import Cursor
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes
from streamward.webhooks import deliveries as events
from streamward.webhooks.schemas import DeliveryStatus

router = Router(include_in_schema=False)

STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
BADGES = {"succeeded": "badge-ok", "failed": "badge-danger", "refused": "badge-warn"}


def _delivery_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such delivery.") from None


@router.get("/webhook/deliveries")
@reads
async def delivery_log(
    request: Request,
    viewer: Annotated[Viewer, page("webhook:read")],
    db: DbSession,
    status: Annotated[str | None, Query(max_length=16)] = None,
    event_type: Cursor = None,
    cursor: Cursor = None,
) -> Response:
    status = status if status in STATUSES else None
    event_type = (event_type or "").strip() or None
    listed = await events.list_deliveries(
        db, viewer.principal, status=status, event_type=event_type, limit=DEFAULT_LIMIT, cursor=cursor
    )
    filters = {"status": status, "event_type": event_type}
    return render(
        request,
        "deliveries.html",
        title="Webhook deliveries",
        section="deliveries",
        rows=listed.items,
        statuses=STATUSES,
        badges=BADGES,
        status_filter=status or "",
        event_type=event_type or "",
        filtered=any(filters.values()),
        cursor=cursor,
        first_url=list_url("/webhook/deliveries", **filters),
        next_url=list_url("/webhook/deliveries", **filters, cursor=listed.next_cursor)
        if listed.next_cursor
        else None,
    )


@router.post("/webhook/deliveries/{delivery_id}/redeliver")
@writes
async def redeliver(
    request: Request,
    delivery_id: str,
    viewer: Annotated[Viewer, page("webhook:write")],
    form: CheckedForm,
    db: DbSession,
) -> Response:
    await events.redeliver(db, viewer.principal, _delivery_id(delivery_id))
    return flash_redirect(
        request,
        "/webhook/deliveries",
        "success",
        "The event is queued for another attempt now, with the same event id.",
    )
