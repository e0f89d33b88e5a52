"""Answers kept by everything they are built from.

A hot answer (a listed stream's JSON, a listed user's) is built from a few values; kept under a key
made of all of them, it is never shown in place of what the database holds: a changed value is
another key. The store is bounded and, when full, starts again: cheaper on a hot path than an LRU's
bookkeeping, and what is read again refills it within a page or two.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class KeptBy(Generic[K, V]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: K, build: Callable[[K], V]) -> V:
        """What ``build`` makes of ``key``: kept from an earlier call, or built (and kept) now."""
        value = self._kept.get(key)
        if value is None:
            if len(self._kept) >= self.limit:
                self._kept.clear()
            value = self._kept[key] = build(key)
        return value
