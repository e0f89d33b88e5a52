"""``record``: the one way a change leaves a trace (it joins the caller's transaction); reading the log."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.models import AuditEntry
from streamward.authz.principal import Principal
from streamward.authz.scoping import scoped
from streamward.db import Database
from streamward.pagination import Page, keyset_page


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


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None  # an actor name (user:<id>, apikey, ...) or an email
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def apply(self, statement: Select[Any]) -> Select[Any]:
        if self.actor:
            statement = statement.where(
                or_(AuditEntry.actor == self.actor, AuditEntry.actor_email == self.actor.strip().lower())
            )
        if self.action:
            statement = statement.where(AuditEntry.action == self.action)
        if self.target_type:
            statement = statement.where(AuditEntry.target_type == self.target_type)
        if self.target_id:
            statement = statement.where(AuditEntry.target_id == self.target_id)
        if self.since:
            statement = statement.where(AuditEntry.created_at >= self.since)
        if self.until:
            statement = statement.where(AuditEntry.created_at < self.until)
        return statement


async def list_entries(
    session: AsyncSession, principal: Principal, where: AuditFilter, *, limit: int, cursor: str | None
) -> Page[AuditEntry]:
    """The organisation's audit log, newest first."""
    statement = where.apply(scoped(select(AuditEntry), AuditEntry, principal))
    return await keyset_page(session, statement, AuditEntry.id, limit=limit, cursor=cursor)


EXPORT_BATCH = 1000


async def iter_entries(
    database: Database, principal: Principal, where: AuditFilter
) -> AsyncIterator[list[AuditEntry]]:
    """Every matching entry, newest first, in batches: an export of any size in bounded memory.

    Uses its own short read sessions because it runs while the response streams, after the
    request's session has closed.
    """
    cursor: str | None = None
    while True:
        async with database.session(write=False) as session:
            page = await list_entries(session, principal, where, limit=EXPORT_BATCH, cursor=cursor)
        yield list(page.items)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
