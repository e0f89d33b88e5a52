"""emit() joins the caller's transaction: the event exists exactly when the change was committed."""

from __future__ import annotations

from sqlalchemy import func, select

from streamward.db import new_id
from streamward.events.models import OutboxEvent
from streamward.events.outbox import emit
from tests.conftest import Env


async def _count(env: Env) -> int:
    async with env.runtime.database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxEvent)) or 0)


async def test_committed_change_has_its_event_and_rolled_back_one_has_none(env: Env) -> None:
    org = await env.org()
    async with env.runtime.database.session() as session:
        emit(session, "test.kept", {"n": 1}, organisation_id=org.id)
        await session.commit()
    async with env.runtime.database.session() as session:
        emit(session, "test.dropped", {"n": 2}, organisation_id=org.id)
        await session.flush()
        await session.rollback()
    async with env.runtime.database.session() as session:
        events = (await session.execute(select(OutboxEvent))).scalars().all()
    assert [(e.type, e.payload, e.status) for e in events] == [("test.kept", {"n": 1}, "pending")]


def test_ids_are_time_ordered_uuid7() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(i.version == 7 for i in ids)
    assert len(set(ids)) == 1000
    # Strictly increasing within a process, even within one millisecond.
    assert ids == sorted(ids)
