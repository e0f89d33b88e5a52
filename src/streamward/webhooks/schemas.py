from __future__ import annotations

import uuid
from typing import Literal

from streamward.schemas import ApiModel, UtcDatetime

DeliveryStatus = Literal["succeeded", "failed", "refused"]


class DeliveryOut(ApiModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    attempt: int
    status: str
    response_code: int | None
    duration_ms: int
    error: str | None
    url: str
    created_at: UtcDatetime


class DeliveryPage(ApiModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class RedeliveryOut(ApiModel):
    event_id: uuid.UUID
    status: str


class TestDeliveryOut(ApiModel):
    event_id: uuid.UUID
    delivered: bool
    response_code: int | None
    duration_ms: int
    error: str | None
