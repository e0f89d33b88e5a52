from __future__ import annotations

import uuid
from typing import Annotated

from streamward.authz.principal import Principal
from streamward.events.models import WebhookDelivery
from streamward.pagination import DEFAULT_LIMIT
from streamward.schemas import column_query
from streamward.web.access import require
from streamward.web.params import Cursor, Limit, RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes
from streamward.webhooks import deliveries as service
from streamward.webhooks import ping
from streamward.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    RedeliveryOut,
    TestDeliveryOut,
)

router = Router(prefix="/api/organisation/webhook", tags=["webhook deliveries"])


@router.get("/deliveries", response_model=DeliveryPage, summary="The delivery log, newest first")
@reads
async def list_deliveries(
    principal: Annotated[Principal, require("webhook:read")],
    db: DbSession,
    status: DeliveryStatus | None = None,
    event_type: Annotated[str | None, column_query(WebhookDelivery.event_type, alias="eventType")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> DeliveryPage:
    page = await service.list_deliveries(
        db, principal, status=status, event_type=event_type, limit=limit, cursor=cursor
    )
    return DeliveryPage(
        items=[DeliveryOut.model_validate(d) for d in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=RedeliveryOut,
    status_code=202,
    summary="Send a delivery's event again (same event id)",
)
@writes
async def redeliver(
    delivery_id: uuid.UUID, principal: Annotated[Principal, require("webhook:write")], db: DbSession
) -> RedeliveryOut:
    event = await service.redeliver(db, principal, delivery_id)
    return RedeliveryOut(event_id=event.id, status=event.status)


@router.post("/test", response_model=TestDeliveryOut, summary="Send a signed test event now")
@writes
async def send_test_event(
    principal: Annotated[Principal, require("webhook:write")],
    db: DbSession,
    runtime: RuntimeDep,
) -> TestDeliveryOut:
    event, outcome = await ping.send_test_event(db, principal, runtime.secret_box, runtime.egress)
    return TestDeliveryOut(
        event_id=event.id,
        delivered=outcome.delivered,
        response_code=outcome.response_code,
        duration_ms=outcome.duration_ms,
        error=outcome.error,
    )
