"""The Redis the shared-limit tests use: its URL, whether it answers, a key prefix of each test's own
(so runs and tests never share a budget) and the removal of that prefix's keys afterwards.

Without a reachable Redis those tests are skipped, except with ``STREAMWARD_REQUIRE_REDIS=1`` (CI),
where that is an error."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
import redis

REDIS_URL = os.environ.get("STREAMWARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("STREAMWARD_REQUIRE_REDIS") == "1"


def _redis_answers() -> bool:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


REDIS_UP = _redis_answers()
if REQUIRE_REDIS and not REDIS_UP:
    raise pytest.UsageError(f"Redis is required (STREAMWARD_REQUIRE_REDIS=1) but silent at {REDIS_URL}")

needs_redis = pytest.mark.skipif(
    not REDIS_UP,
    reason=f"Redis does not answer at {REDIS_URL} (STREAMWARD_TEST_REDIS_URL); "
    "STREAMWARD_REQUIRE_REDIS=1 makes this an error",
)


def new_prefix() -> str:
    return f"swtest:{uuid.uuid4().hex[:12]}:"


def redis_keys(prefix: str) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=prefix + "*"))
    finally:
        client.close()


def drop_keys(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def pttl(key: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.pttl(key))
    finally:
        client.close()


def closed_port_url() -> str:
    """A Redis URL on a local port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"
