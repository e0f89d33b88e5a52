"""The look-up pool: raw asyncpg connections for the statements every request runs (credential and
playback-token checks, list pages), and look-ups that concurrent requests share.

A shared look-up (``BatchedLookup``) answers every request that asked for one while the previous
round trip of its kind was under way, in one statement: on two cores that PostgreSQL shares with the
server, a round trip per request cost the server's client CPU (asyncpg's send, parse and wake-up)
and PostgreSQL's per-statement CPU once per request; shared, once per round trip.

What a shared look-up must not lose is that a committed change (a revoked token, a renewed token
key, a changed role, a rotated API key) applies to the very next request in every process. It does
not: a request never receives the answer of a statement that was sent before it asked, only of one
sent after, which reads the rows committed by then. While a statement is under way, new keys wait
for the next one; nothing is cached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

# A round trip carries at most this many keys; the rest wait for the next one. Bounded so that a
# statement's size (and PostgreSQL's planning of it) stays small whatever the load.
MAX_KEYS_PER_ROUND_TRIP = 64
# How many statements of one kind may be under way at once. With one, a request that asks just after
# a statement was sent waits out that round trip and then its own; with two, its own can already be
# on the way. Under 32 connections of wrk, 1, 2 and 4 measured within the noise of each other
# (authenticated read at 0.8-1.3 of the stack's limit with each).
MAX_IN_FLIGHT = 2


@dataclass(frozen=True, eq=False)
class BatchedLookup:
    """A look-up by key that concurrent requests may share.

    ``sql`` takes one array per part of the key (``$1`` .. ``$n``, in the key's order), then the
    values of ``extra()``, evaluated when the statement is sent (the time a token's expiry is compared
    with, say: never earlier than any request it answers). Its first column is the key's 1-based
    position in those arrays (``unnest(...) WITH ORDINALITY``); a key has at most one row. Build it
    with ``batched_sql``.
    """

    sql: str
    extra: Callable[[], tuple[Any, ...]] = field(default=lambda: ())


def batched_sql(key_columns: Sequence[tuple[str, str]], per_key: str) -> str:
    """A shared look-up's statement from the statement for one key. ``key_columns`` names each part
    of the key and its PostgreSQL type; ``per_key`` reads them as ``w.<name>`` (and the extras as
    ``$n+1`` ...). Each key is looked up on its own (a LATERAL join: an index probe per key, the plan
    one key would get), whatever the number of keys."""
    arrays = ", ".join(f"${position}::{kind}[]" for position, (_, kind) in enumerate(key_columns, 1))
    names = ", ".join(name for name, _ in key_columns)
    return (
        f"SELECT w.position_, x.* FROM unnest({arrays}) WITH ORDINALITY AS w({names}, position_)"  # noqa: S608
        f" CROSS JOIN LATERAL ({per_key}) x"
    )


class _Shared:
    """The requests waiting for one kind of look-up, and the statements of that kind under way."""

    def __init__(self, pool: asyncpg.Pool, lookup: BatchedLookup) -> None:
        self.pool = pool
        self.lookup = lookup
        # Keys asked for since the last statement was sent: each future is answered by a later one.
        self.waiting: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def one(self, key: tuple[Any, ...]) -> Any:
        future = self.waiting.get(key)
        if future is None:
            future = self.waiting[key] = asyncio.get_running_loop().create_future()
            if self.in_flight < MAX_IN_FLIGHT:
                self._send()
        # Requests for one key share its future: one of them giving up must not cancel it for the rest.
        return await asyncio.shield(future)

    def _send(self) -> None:
        keys = list(self.waiting)[:MAX_KEYS_PER_ROUND_TRIP]
        futures = [self.waiting.pop(key) for key in keys]
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._round_trip(keys, futures))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _round_trip(self, keys: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]]) -> None:
        try:
            columns = [list(part) for part in zip(*keys, strict=True)]
            rows = await self.pool.fetch(self.lookup.sql, *columns, *self.lookup.extra())
            found = {row[0]: row for row in rows}
            for position, future in enumerate(futures, 1):
                if not future.done():
                    future.set_result(found.get(position))
        except Exception as error:
            for future in futures:
                if not future.done():
                    future.set_exception(error)
                    future.exception()  # retrieved: no "never retrieved" warning if all waiters left
        except BaseException:  # cancelled (the pool is closing): so are its waiters
            for future in futures:
                future.cancel()
            raise
        finally:
            self.in_flight -= 1
            if self.waiting and self.in_flight < MAX_IN_FLIGHT:
                self._send()


class LookupPool:
    """The raw asyncpg pool of one Database (PostgreSQL only): ``fetch`` and ``fetchrow`` take a
    connection for one statement and give it back; ``one`` runs a shared look-up."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._shared: dict[BatchedLookup, _Shared] = {}

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self.pool.fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchrow(sql, *args)

    async def one(self, lookup: BatchedLookup, key: tuple[Hashable, ...]) -> Any:
        """The row of ``key`` (its first column the key's position; the look-up's own columns after
        it), or None: read by a statement sent after this call, shared with whoever else asked
        meanwhile."""
        shared = self._shared.get(lookup)
        if shared is None:
            shared = self._shared[lookup] = _Shared(self.pool, lookup)
        return await shared.one(key)

    async def close(self) -> None:
        for shared in self._shared.values():
            for task in list(shared.tasks):
                task.cancel()
        await self.pool.close()
