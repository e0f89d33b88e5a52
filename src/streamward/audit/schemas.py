from __future__ import annotations

import uuid
from typing import Any

from streamward.schemas import ApiModel, UtcDatetime


class AuditEntryOut(ApiModel):
    id: uuid.UUID
    created_at: UtcDatetime
    actor: str
    actor_email: str | None
    action: str
    target_type: str | None
    target_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    client_address: str | None
    request_id: str | None


class AuditPage(ApiModel):
    items: list[AuditEntryOut]
    next_cursor: str | None
