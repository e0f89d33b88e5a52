"""``record``: the one way a change leaves a trace. Joins the caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.models import AuditEntry
from streamward.authz.principal import Principal


@dataclass(frozen=True)
class Actor:
    """Who acted, as the audit log names them."""

    name: str  # user:<membership id> | apikey | operator | system | anonymous
    email: str | None = None
    client_address: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.actor, principal.email, principal.client_address)


SYSTEM = Actor("system")


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    organisation_id: uuid.UUID | None,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        organisation_id=organisation_id,
        actor=actor.name,
        actor_email=actor.email,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        before=before,
        after=after,
        client_address=actor.client_address,
    )
    session.add(entry)
    return entry
