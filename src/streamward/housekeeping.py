"""Housekeeping: delete rows that no longer mean anything, a small batch at a time.

What goes, and when:

* bintu sessions past their expiry (an expired token is refused anyway);
* password-reset links past their expiry, or used more than the per-account mail interval ago (that
  interval is read from the links, so a used link stays until it has no say in it any more);
* playback revocations of tokens that can no longer verify anyway: the playback service's own rule
  (expiry plus ``REVOCATION_KEPT_AFTER_EXP_SECONDS``);
* invitations never accepted whose expiry is more than the retention ago, revoked ones included: their
  link stopped long since, and the audit log keeps their history. Recently expired ones stay, so
  ``GET /api/user/invite?status=expired`` still lists them; accepted ones stay with their membership;
* login challenges (the second step of a login, a passkey ceremony) past their expiry: an expired one
  is refused anyway;
* outbox events that are finished (delivered, failed or skipped) and whose last attempt was scheduled
  more than the retention ago, with their delivery log. An event's attempts go together with it.

Never the audit log.

Each batch is one statement of at most ``batch_size`` rows (``DELETE ... WHERE id IN (SELECT id ...
LIMIT n)``) in its own short transaction, so a purge of millions of rows never holds a lock for long;
on PostgreSQL the inner SELECT takes ``FOR UPDATE SKIP LOCKED``, so it never waits for a row a request
(or another purging process) holds: it leaves that row for next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select
from sqlalchemy.engine import CursorResult

from streamward.authn.mfa.models import LoginChallenge
from streamward.authn.models import BintuSession, PasswordReset
from streamward.authn.password_changes import RESET_MAIL_INTERVAL
from streamward.db import Base, Database, utcnow
from streamward.events.models import OutboxEvent, WebhookDelivery
from streamward.invites.models import Invitation
from streamward.playback.models import PlaybackRevocation
from streamward.playback.service import REVOCATION_KEPT_AFTER_EXP_SECONDS

log = logging.getLogger(__name__)

BATCH_SIZE = 1_000
FINISHED_EVENT_STATUSES = ("delivered", "failed", "skipped")


@dataclass(frozen=True)
class Kind:
    """One kind of row housekeeping deletes: its table's key and the condition that makes it purgeable."""

    name: str
    model: type[Base]
    key: Any  # its primary-key column
    purgeable: Callable[[datetime, timedelta], ColumnElement[bool]]


def _expired_session(now: datetime, _retention: timedelta) -> ColumnElement[bool]:
    return BintuSession.expires_at < now


def _spent_reset_link(now: datetime, _retention: timedelta) -> ColumnElement[bool]:
    return or_(
        PasswordReset.expires_at < now,
        and_(PasswordReset.used_at.is_not(None), PasswordReset.used_at < now - RESET_MAIL_INTERVAL),
    )


def _expired_challenge(now: datetime, _retention: timedelta) -> ColumnElement[bool]:
    return LoginChallenge.expires_at < now


def _forgettable_revocation(now: datetime, _retention: timedelta) -> ColumnElement[bool]:
    return PlaybackRevocation.expires_at < now - timedelta(seconds=REVOCATION_KEPT_AFTER_EXP_SECONDS)


def _old_invitation(now: datetime, retention: timedelta) -> ColumnElement[bool]:
    return and_(Invitation.accepted_at.is_(None), Invitation.expires_at < now - retention)


def _old_finished_event(now: datetime, retention: timedelta) -> ColumnElement[bool]:
    # (status, next_attempt_at) is the claim's index: the purge uses it too. A redelivered event's
    # next attempt moved on, so it stays another retention period.
    return and_(
        OutboxEvent.status.in_(FINISHED_EVENT_STATUSES), OutboxEvent.next_attempt_at < now - retention
    )


SESSIONS = Kind("sessions", BintuSession, BintuSession.id, _expired_session)
RESET_LINKS = Kind("password reset links", PasswordReset, PasswordReset.id, _spent_reset_link)
REVOCATIONS = Kind(
    "playback revocations", PlaybackRevocation, PlaybackRevocation.jti, _forgettable_revocation
)
INVITATIONS = Kind("invitations", Invitation, Invitation.id, _old_invitation)
CHALLENGES = Kind("login challenges", LoginChallenge, LoginChallenge.id, _expired_challenge)
EVENTS = Kind("outbox events", OutboxEvent, OutboxEvent.id, _old_finished_event)
DELIVERIES = "webhook deliveries"  # counted with their events

KINDS = (SESSIONS, RESET_LINKS, CHALLENGES, REVOCATIONS, INVITATIONS, EVENTS)
REPORTED = (
    SESSIONS.name,
    RESET_LINKS.name,
    CHALLENGES.name,
    REVOCATIONS.name,
    INVITATIONS.name,
    EVENTS.name,
    DELIVERIES,
)


def _batch(kind: Kind, now: datetime, retention: timedelta, size: int) -> Any:
    # SQLite renders no FOR UPDATE (it has a single writer); PostgreSQL skips rows others hold.
    return (
        select(kind.key).where(kind.purgeable(now, retention)).limit(size).with_for_update(skip_locked=True)
    )


async def _purge_batch(
    database: Database, kind: Kind, now: datetime, retention: timedelta, size: int
) -> dict[str, int]:
    async with database.session() as session:
        if kind is EVENTS:
            # The delivery log first, counted, in the same transaction (the foreign key would
            # cascade, but silently).
            ids = list((await session.execute(_batch(kind, now, retention, size))).scalars())
            if not ids:
                await session.rollback()
                return {}
            attempts: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
                delete(WebhookDelivery)
                .where(WebhookDelivery.event_id.in_(ids))
                .execution_options(synchronize_session=False)
            )
            events: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
                delete(OutboxEvent)
                .where(OutboxEvent.id.in_(ids))
                .execution_options(synchronize_session=False)
            )
            await session.commit()
            return {EVENTS.name: events.rowcount, DELIVERIES: attempts.rowcount}
        result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
            delete(kind.model)
            .where(kind.key.in_(_batch(kind, now, retention, size).scalar_subquery()))
            .execution_options(synchronize_session=False)
        )
        await session.commit()
        return {kind.name: result.rowcount}


async def purge(
    database: Database,
    *,
    retention_days: int,
    batch_size: int = BATCH_SIZE,
    now: datetime | None = None,
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """Delete everything purgeable, batch after batch, and return how many rows of each kind went.
    Stops between batches once ``stop`` is set (the worker is shutting down)."""
    now = now or utcnow()
    retention = timedelta(days=retention_days)
    counts = dict.fromkeys(REPORTED, 0)
    for kind in KINDS:
        while stop is None or not stop.is_set():
            deleted = await _purge_batch(database, kind, now, retention, batch_size)
            for name, count in deleted.items():
                counts[name] += count
            if deleted.get(kind.name, 0) < batch_size:
                break  # this kind is done (or only rows others hold are left)
    return counts


def describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items() if count) or "nothing"


async def run_periodically(
    database: Database, *, retention_days: int, interval_seconds: float, stop: asyncio.Event
) -> None:
    """The delivery worker's housekeeping: one purge every ``interval_seconds`` until ``stop``."""
    while not stop.is_set():
        try:
            counts = await purge(database, retention_days=retention_days, stop=stop)
        except Exception:
            log.exception("housekeeping failed; trying again in %g s", interval_seconds)
        else:
            if any(counts.values()):
                log.info("housekeeping purged %s", describe(counts))
        with contextlib.suppress(TimeoutError):  # the interval passed: purge again
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
