"""``record``: the one way a change leaves a trace (it joins the caller's transaction);
``record_change``: a change's trace and the event it causes, as one act; reading the log."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.models import AuditEntry
from streamward.authz.principal import Principal
from streamward.authz.scoping import scoped
from streamward.db import Database, new_id, utcnow
from streamward.errors import InvalidTime
from streamward.events.catalogue import EventType
from streamward.events.outbox import emit
from streamward.pagination import Page, keyset_page
from streamward.request_context import current_request_id
from streamward.schemas import column_length, fit_column


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
    written = entry(
        actor,
        action,
        organisation_id=organisation_id,
        target_type=target_type,
        target_id=target_id,
        before=before,
        after=after,
    )
    session.add(written)
    return written


def entry(
    actor: Actor,
    action: str,
    *,
    organisation_id: uuid.UUID | None,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    """An entry as ``record`` writes it, in no session yet, its id and time set: for a write that
    inserts its entries with its own statement (a password login's, ``authn.login_statements``)."""
    # What a client typed (the email of a failed login, a media server's address) is recorded
    # whatever its length: cut to its column, marked as cut, rather than failing the request.
    return AuditEntry(
        id=new_id(),
        created_at=utcnow(),
        organisation_id=organisation_id,
        actor=actor.name,
        actor_email=fit_column(actor.email, AuditEntry.actor_email),
        action=action,
        target_type=target_type,
        target_id=fit_column(str(target_id), AuditEntry.target_id) if target_id is not None else None,
        before=before,
        after=after,
        client_address=fit_column(actor.client_address, AuditEntry.client_address),
        request_id=current_request_id(),  # sane by construction (observability): fits its column
    )


def record_change(
    session: AsyncSession,
    actor: Actor | Principal,
    action: str,
    *,
    organisation_id: uuid.UUID,
    target_type: str,
    target_id: uuid.UUID | str,
    event: EventType,
    payload: dict[str, Any],
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """A change to an organisation: its audit entry and the event it causes, in the caller's
    transaction, so both exist exactly when the change was committed. ``action`` names the entry
    (often the event's own name); ``payload`` is built with ``event.payload(...)``."""
    who = actor if isinstance(actor, Actor) else Actor.of(actor)
    record(
        session,
        who,
        action,
        organisation_id=organisation_id,
        target_type=target_type,
        target_id=target_id,
        before=before,
        after=after,
    )
    emit(session, event, payload, organisation_id=organisation_id)


# The actor filter matches the actor name or the actor's email: as long as the longer of the two.
ACTOR_FILTER_LENGTH = max(column_length(AuditEntry.actor), column_length(AuditEntry.actor_email))
# ISO 8601 with date, time, fractions and offset fits easily; anything longer is no time.
MAX_TIME_LENGTH = 40
_START_OF_TIME = datetime.min.replace(tzinfo=UTC)
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def time_bound(value: str | None, *, name: str, whole_day: bool = False) -> datetime | None:
    """A ``from``/``to`` filter as a UTC instant; None when empty.

    ISO 8601; a time without offset is UTC. With ``whole_day`` a bare date ends at the next
    midnight, so that "to 2024-05-01" includes that day (the dashboard's date fields). A bound that
    an offset (or the day's end) pushes past year 9999 or before year 1 is clamped to the end or
    the start of time rather than failing: ``to=9999-12-31`` means "no upper bound". Anything that
    is no time at all is 400 ``invalid_time``.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        if len(text) > MAX_TIME_LENGTH:
            raise ValueError(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidTime(details={"field": name}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
        if whole_day and len(text) == len("YYYY-MM-DD"):
            moment += timedelta(days=1)
    except OverflowError:
        return _END_OF_TIME if moment.year >= 9999 else _START_OF_TIME
    return moment


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

    @classmethod
    def of(
        cls,
        *,
        actor: str | None = None,
        action: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        whole_days: bool = False,
    ) -> AuditFilter:
        """From the filters as a client sent them: blanks are no filter, times are parsed (and
        refused) here, before anything is read or streamed."""
        return cls(
            actor=(actor or "").strip() or None,
            action=(action or "").strip() or None,
            target_type=(target_type or "").strip() or None,
            target_id=(target_id or "").strip() or None,
            since=time_bound(since, name="from"),
            until=time_bound(until, name="to", whole_day=whole_days),
        )


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
