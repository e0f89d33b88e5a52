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
import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
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

    ``per_key`` is the statement for one key, which reads the key's parts as ``w.<name>``
    (``key_columns``: each part's name and PostgreSQL type, in the key's order) and may take
    ``extra()``'s values as ``$n+1``, ``$n+2`` ... (n: the number of parts), evaluated when the
    statement is sent: the time a token's expiry is compared with, say, never earlier than any
    request it answers. A key has at most one row (the look-ups are by unique columns).
    """

    key_columns: Sequence[tuple[str, str]]
    per_key: str
    extra: Callable[[], tuple[Any, ...]] = field(default=lambda: ())
    # Built from the above (``__post_init__``):
    shared_sql: str = field(init=False, default="")  # every key's row, led by the key's position
    single_sql: str = field(init=False, default="")  # one key alone, its parts as parameters

    def __post_init__(self) -> None:
        arrays = ", ".join(f"${position}::{kind}[]" for position, (_, kind) in enumerate(self.key_columns, 1))
        names = ", ".join(name for name, _ in self.key_columns)
        # Every key's row, led by the key's 1-based position in the arrays.
        object.__setattr__(
            self,
            "shared_sql",
            f"SELECT w.position_, x.* FROM unnest({arrays}) WITH ORDINALITY AS w({names}, position_)"  # noqa: S608
            f" CROSS JOIN LATERAL ({self.per_key}) x",
        )
        # One key alone: its parts are parameters, as the look-up always was (at low load every
        # look-up is alone).
        single = self.per_key
        for position, (name, _) in enumerate(self.key_columns, 1):
            single = re.sub(rf"\bw\.{name}\b", f"${position}", single)
        object.__setattr__(self, "single_sql", f"SELECT 1 AS position_, x.* FROM ({single}) x")  # noqa: S608


# Settings of the connections that run shared statements. PostgreSQL plans a prepared statement
# afresh at each execution while a plan for its parameters looks cheaper than the kept one; over an
# array of unknown length, the kept plan assumes many keys, so statements of two or three keys were
# planned every time: 1.3 ms per statement on 100k sessions, against 0.26 ms with the kept plan
# (nested loops over the unique indexes, whatever the number of keys) and 0.22 ms for one key's own
# statement. Lists keep the default: a prefix search's plan depends on its pattern.
SHARED_SERVER_SETTINGS = {"plan_cache_mode": "force_generic_plan"}


class _Shared:
    """The requests waiting for one kind of look-up, and the statements of that kind under way."""

    def __init__(self, pool: asyncpg.Pool, shared_pool: asyncpg.Pool, lookup: BatchedLookup) -> None:
        self.pool = pool
        self.shared_pool = shared_pool
        self.lookup = lookup
        # Keys asked for since the last statement was sent: each future is answered by a later one.
        self.waiting: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self.in_flight = 0
        self.sent = 0  # statements sent so far
        self.closed = False
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
        keys = list(islice(self.waiting, MAX_KEYS_PER_ROUND_TRIP))
        futures = [self.waiting.pop(key) for key in keys]
        self.in_flight += 1
        self.sent += 1
        task = asyncio.get_running_loop().create_task(self._round_trip(keys, futures))
        self.tasks.add(task)
        # Not a ``finally`` in the task: a task cancelled before it ever ran has none to run.
        task.add_done_callback(partial(self._done, futures))

    async def _round_trip(self, keys: list[tuple[Any, ...]], futures: list[asyncio.Future[Any]]) -> None:
        try:
            if len(keys) == 1:
                rows = await self.pool.fetch(self.lookup.single_sql, *keys[0], *self.lookup.extra())
            else:
                columns = [list(part) for part in zip(*keys, strict=True)]
                rows = await self.shared_pool.fetch(self.lookup.shared_sql, *columns, *self.lookup.extra())
            found = {row[0]: row for row in rows}
            if len(found) != len(rows):  # a key with two rows: which is its own cannot be told
                raise RuntimeError("a shared look-up found two rows for one key")
        except Exception as error:
            for future in futures:
                if not future.done():
                    # Each request its own exception: one object raised in many tasks would gather
                    # all their tracebacks.
                    future.set_exception(_own_copy(error))
                    future.exception()  # retrieved: no "never retrieved" warning if all waiters left
            return
        for position, future in enumerate(futures, 1):
            if not future.done():
                future.set_result(found.get(position))

    def _done(self, futures: list[asyncio.Future[Any]], task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.in_flight -= 1
        for future in futures:  # the round trip was cancelled (the pool is closing): so are its requests
            future.cancel()
        if self.waiting and not self.closed and self.in_flight < MAX_IN_FLIGHT:
            self._send()

    def close(self) -> None:
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        for future in self.waiting.values():
            future.cancel()
        self.waiting.clear()


def _own_copy(error: Exception) -> Exception:
    try:
        return copy.copy(error)
    except Exception:  # an exception that cannot be rebuilt from its arguments: the one object, then
        return error


class LookupPool:
    """The raw asyncpg pools of one Database (PostgreSQL only): ``fetch`` and ``fetchrow`` take a
    connection for one statement and give it back; ``one`` runs a look-up that concurrent requests
    share, on ``shared_pool`` (connections with ``SHARED_SERVER_SETTINGS``) when it has several keys."""

    def __init__(self, pool: asyncpg.Pool, shared_pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool
        self.shared_pool = shared_pool or pool
        self._shared: dict[BatchedLookup, _Shared] = {}

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self.pool.fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchrow(sql, *args)

    async def one(self, lookup: BatchedLookup, key: tuple[str | None, ...]) -> Any:
        """The row of ``key`` (its first column the key's position; the look-up's own columns after
        it), or None: read by a statement sent after this call, shared with whoever else asked
        meanwhile.

        A key PostgreSQL cannot hold as text (one with a NUL character) has no row, and is answered
        so here: sent, it would fail the statement of every request that shares it."""
        if any(part is not None and "\x00" in part for part in key):
            return None
        shared = self._shared.get(lookup)
        if shared is None:
            shared = self._shared[lookup] = _Shared(self.pool, self.shared_pool, lookup)
        return await shared.one(key)

    def statements_sent(self, lookup: BatchedLookup) -> int:
        """How many statements of this look-up this pool has sent (tests, diagnostics)."""
        shared = self._shared.get(lookup)
        return shared.sent if shared is not None else 0

    async def close(self) -> None:
        for shared in self._shared.values():
            shared.close()
        await self.pool.close()
        if self.shared_pool is not self.pool:
            await self.shared_pool.close()
