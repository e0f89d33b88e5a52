"""The delivery worker's recorder: finished attempts are written by one background writer, in
batches (one transaction for everything that finished since the last one)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from streamward.db import Database
from streamward.webhooks import delivery
from streamward.webhooks.delivery import Attempt

log = logging.getLogger(__name__)


class AttemptLog:
    """Records finished attempts, many per transaction: one writer at a time takes everything that
    finished while the previous transaction ran. ``on_recorded`` hears of each batch once its
    transaction is over (committed, or failed: then the events' leases run out and they are retried)."""

    def __init__(
        self,
        database: Database,
        on_recorded: Callable[[Sequence[Attempt]], None],
        write_turn: AbstractAsyncContextManager[Any],
    ) -> None:
        self.database = database
        self.on_recorded = on_recorded
        self.write_turn = write_turn
        self._waiting: list[Attempt] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, attempt: Attempt) -> None:
        self._waiting.append(attempt)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                async with self.write_turn:
                    await delivery.record(self.database, batch)
            except Exception:
                log.exception(
                    "recording %d delivery attempts failed; their events will be retried after their lease",
                    len(batch),
                )
            finally:
                self.on_recorded(batch)

    async def flush(self) -> None:
        """Return once everything added so far is recorded (or its recording failed)."""
        # asyncio.wait, not await: cancelling the caller must not cancel the transaction under way.
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])
