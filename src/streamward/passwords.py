"""argon2id at OWASP's parameters (m=19 MiB, t=2, p=1), computed off the event loop.

Hashes run in a pool of their own, one thread per core, at a lower scheduling priority: a burst of
logins uses every idle core, but the event loop (which serves every other request) wins the CPU
whenever both want it. With the default executor (cores + 4 threads at the loop's priority) a login
burst starved the loop and tripled the p99 of ordinary reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16)

# Verified against when the email is unknown, so that both failures cost the same time.
_DUMMY_HASH = _hasher.hash("streamward-dummy-password-never-valid")


HASHING_THREADS = os.cpu_count() or 1
# Niceness of the hashing threads (Linux schedules threads individually; elsewhere this is a no-op):
# the lowest priority. Measured with make bench's login burst (2 cores, wrk and PostgreSQL on the
# same machine): at 10 the read's p99 during the burst was 2.4-2.5x its idle p99; at 19 1.5x, and
# logins still reached 0.97 of cores / t_hash (the hashes run whenever the loop waits).
HASHING_NICENESS = 19

T = TypeVar("T")


def _lower_priority() -> None:
    # Not Linux, or not permitted: hashing still works, at the loop's priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


_pool = ThreadPoolExecutor(
    max_workers=HASHING_THREADS, thread_name_prefix="argon2", initializer=_lower_priority
)


async def _off_loop(function: Callable[..., T], *args: str) -> T:
    return await asyncio.get_running_loop().run_in_executor(_pool, function, *args)


async def hash_password(password: str) -> str:
    return await _off_loop(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with ``None`` (unknown account) burns the same time and fails."""
    if password_hash is None:
        await _off_loop(_verify, _DUMMY_HASH, password)
        return False
    return await _off_loop(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
