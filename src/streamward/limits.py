"""Rate limits with token buckets, kept in this process or in Redis shared by every process.

Login: per client address every attempt costs a token; per account only failures do. A bucket
refills continuously, so the worst an attacker can do to a real user is keep one account's bucket
empty while they keep guessing, and it refills within one window after they stop: no long lockout.
Accounts are keyed by the email as typed (normalised), known or not, so throttling does not tell
which emails exist.

The public routes behind a link token (an invitation's preview and acceptance, setting a password
with a reset link) have per-address budgets of their own (``LinkThrottle``), and so has the API-key
check of the bintu SDK (``POST /api/apikey``).

Where the buckets live (``Limits``): in this process's memory, which is right for one process only
(N processes would each grant the whole budget), or in Redis when ``STREAMWARD_REDIS_URL`` is set,
where one Lua script refills and takes atomically, so every process spends from the same budget.
Redis keys are an HMAC of the bucket's key under the secret key (no email or address in clear) and
expire by themselves once their bucket is full again. When Redis cannot be reached the limits fail
closed: 503 ``rate_limit_unavailable``, never an unlimited login.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from streamward.config import Settings
from streamward.errors import AppError, RateLimited

log = logging.getLogger(__name__)

T = TypeVar("T")

# A dead or unreachable Redis must not hang requests: short socket timeouts, one retry (a pooled
# connection may have been closed by a Redis restart), then a short pause during which calls are
# refused at once instead of each waiting for the timeout again.
REDIS_TIMEOUT_SECONDS = 0.25
REDIS_PAUSE_AFTER_ERROR_SECONDS = 1.0
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


class RateLimitUnavailable(AppError):
    """The shared limits cannot be checked (Redis unreachable): refuse rather than not limit."""

    status_code = 503
    code = "rate_limit_unavailable"
    message = "Rate limits cannot be checked right now; try again shortly."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)})


class Buckets(ABC):
    """One budget (``capacity`` tokens refilled over a window), one bucket per key.

    ``capacity`` and ``rate`` (tokens per second) are read on every call, so they can be changed
    on a running instance (tests shrink budgets that way)."""

    def __init__(self, capacity: int, window_seconds: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / window_seconds

    @abstractmethod
    async def _wait(self, key: str, *, spend: bool) -> int | None:
        """Seconds until one token is available (spending nothing), or None when one is; with
        ``spend`` an available token is spent."""

    async def take(self, key: str) -> int | None:
        """Spend one token; when none is left spend nothing and return the seconds to wait."""
        return await self._wait(key, spend=True)

    async def retry_after(self, key: str) -> int | None:
        """Seconds until one token is available, or None when one is available now."""
        return await self._wait(key, spend=False)

    async def charge(self, key: str) -> None:
        """Spend one token, or refuse: 429 ``rate_limited`` with Retry-After."""
        wait = await self.take(key)
        if wait:
            raise RateLimited(wait)


class TokenBuckets(Buckets):
    """In-process buckets; bounded memory (least recently used keys are dropped first)."""

    def __init__(self, capacity: int, window_seconds: float, *, max_keys: int = 100_000) -> None:
        super().__init__(capacity, window_seconds)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)

    async def _wait(self, key: str, *, spend: bool) -> int | None:
        now = time.monotonic()
        tokens, stamp = self._buckets.get(key, (self.capacity, now))
        level = min(self.capacity, tokens + (now - stamp) * self.rate)
        if level < 1:
            return max(1, math.ceil((1 - level) / self.rate))
        if spend:
            self._buckets[key] = (level - 1, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return None

    def clear(self) -> None:
        self._buckets.clear()


# Refill then take (or only look, when ARGV[3] is 0), in one step on the server: no two processes
# can both spend the last token. Time is the server's, so the processes' clocks do not matter.
# KEYS[1] the bucket; ARGV: capacity, refill rate in tokens per millisecond, spend (1 or 0).
# Returns -1 when a token was available (and spent), else the milliseconds until one is.
# The key expires when the bucket would be full again: a missing key is a full bucket.
_TAKE_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local spend = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local level = capacity
if state[1] then
  local elapsed = math.max(0, now - tonumber(state[2]))
  level = math.min(capacity, tonumber(state[1]) + elapsed * rate)
end
if level < 1 then
  return math.ceil((1 - level) / rate)
end
if spend == 1 then
  level = level - 1
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', level), 'stamp', now)
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((capacity - level) / rate)))
end
return -1
"""


class Limits(ABC):
    """Where the buckets (and the once-per-window marks) are kept."""

    shared = False  # True when every process spends from the same budgets

    @abstractmethod
    def buckets(self, name: str, capacity: int, window_seconds: float) -> Buckets:
        """The budget called ``name`` (unique per purpose: the store keys buckets by it)."""

    @abstractmethod
    async def first_time(self, name: str, key: str, window_seconds: float) -> bool:
        """True for the first call with (name, key) in ``window_seconds``, False for the others."""

    async def ping(self) -> bool:
        """Whether the limits can be checked now (for health checks); never raises."""
        return True

    async def aclose(self) -> None:
        return None


class LocalLimits(Limits):
    """This process's memory: right for a single process only."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._marks: OrderedDict[tuple[str, str], float] = OrderedDict()

    def buckets(self, name: str, capacity: int, window_seconds: float) -> Buckets:
        return TokenBuckets(capacity, window_seconds, max_keys=self.max_keys)

    async def first_time(self, name: str, key: str, window_seconds: float) -> bool:
        now = time.monotonic()
        last = self._marks.get((name, key))
        if last is not None and now - last < window_seconds:
            return False
        self._marks[(name, key)] = now
        self._marks.move_to_end((name, key))
        while len(self._marks) > self.max_keys:
            self._marks.popitem(last=False)
        return True


class RedisLimits(Limits):
    """Redis shared by every process (``STREAMWARD_REDIS_URL``). Any Redis failure refuses the
    request with 503 ``rate_limit_unavailable``: a limit that silently switches off is no limit."""

    shared = True

    def __init__(self, url: str, *, secret_key: bytes, prefix: str = "streamward:") -> None:
        # Imported here: a single process without Redis never loads the client.
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.prefix = prefix
        # A key of its own, derived from the secret key, for naming Redis keys: emails and client
        # addresses never reach Redis in clear, and cannot be confirmed by hashing a guess.
        self._key_hmac = hmac.new(secret_key, b"streamward/rate-limit-keys", hashlib.sha256).digest()
        self.redis = Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 1),
        )
        self._take = self.redis.register_script(_TAKE_SCRIPT)
        self._paused_until = 0.0

    def redis_key(self, name: str, key: str) -> str:
        mac = hmac.new(self._key_hmac, f"{name}\0{key}".encode(), hashlib.sha256).hexdigest()[:32]
        return f"{self.prefix}{name}:{mac}"

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        if time.monotonic() < self._paused_until:
            raise RateLimitUnavailable()
        from redis.exceptions import RedisError

        try:
            result = await command()
        except (TimeoutError, RedisError, OSError) as exc:
            if self._paused_until == 0.0:  # log the outage once, not once per request
                log.error("rate limits unavailable, refusing limited requests: Redis: %s", exc)
            self._paused_until = time.monotonic() + REDIS_PAUSE_AFTER_ERROR_SECONDS
            raise RateLimitUnavailable() from exc
        if self._paused_until:
            log.warning("rate limits available again: Redis answers")
            self._paused_until = 0.0
        return result

    async def wait_for_token(
        self, name: str, key: str, capacity: float, rate: float, *, spend: bool
    ) -> int | None:
        """The Lua script on one bucket; seconds to wait as TokenBuckets counts them, or None."""
        redis_key = self.redis_key(name, key)
        args = [repr(capacity), repr(rate / 1000), 1 if spend else 0]
        wait_ms = int(await self._call(lambda: self._take(keys=[redis_key], args=args)))
        if wait_ms < 0:
            return None
        return max(1, math.ceil(wait_ms / 1000))

    def buckets(self, name: str, capacity: int, window_seconds: float) -> Buckets:
        return RedisBuckets(self, name, capacity, window_seconds)

    async def first_time(self, name: str, key: str, window_seconds: float) -> bool:
        redis_key = self.redis_key(name, key)
        window_ms = max(1, math.ceil(window_seconds * 1000))
        return bool(await self._call(lambda: self.redis.set(redis_key, 1, nx=True, px=window_ms)))

    async def ping(self) -> bool:
        """Whether Redis answers (for health checks); never raises."""
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        await self.redis.aclose()


class RedisBuckets(Buckets):
    def __init__(self, limits: RedisLimits, name: str, capacity: int, window_seconds: float) -> None:
        super().__init__(capacity, window_seconds)
        self.limits = limits
        self.name = name

    async def _wait(self, key: str, *, spend: bool) -> int | None:
        return await self.limits.wait_for_token(self.name, key, self.capacity, self.rate, spend=spend)


def limits_for(settings: Settings) -> Limits:
    """Redis when ``STREAMWARD_REDIS_URL`` is set, else this process's memory."""
    if settings.redis_url is None:
        return LocalLimits()
    return RedisLimits(
        settings.redis_url.get_secret_value(),
        secret_key=settings.secret_key_bytes,
        prefix=settings.redis_key_prefix,
    )


def unshared_limits_warning(settings: Settings, workers: int) -> str | None:
    """What ``serve`` warns about when several processes would each keep their own budgets."""
    if workers <= 1 or settings.redis_url is not None:
        return None
    return (
        f"{workers} workers without STREAMWARD_REDIS_URL: every rate limit (login, password reset, "
        f"invitation and reset links, API-key checks) is kept per process, so a client gets up to "
        f"{workers} times each budget; set STREAMWARD_REDIS_URL to share them"
    )


@dataclass
class LoginThrottle:
    per_address: Buckets
    failures_per_account: Buckets
    limits: Limits

    async def first_refusal(self, key: str, window_seconds: float) -> bool:
        """Whether this refusal is the first for ``key`` in the window: a flood of refused attempts
        leaves one audit entry per key and window, not one database write per request (in every
        process together, when the limits are shared)."""
        return await self.limits.first_time("login-refused", key, window_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, limits: Limits | None = None) -> LoginThrottle:
        limits = limits or LocalLimits()
        return cls(
            per_address=limits.buckets(
                "login-address", settings.login_rate_per_ip, settings.login_rate_per_ip_window_seconds
            ),
            failures_per_account=limits.buckets(
                "login-account-failures",
                settings.login_failures_per_account,
                settings.login_failures_per_account_window_seconds,
            ),
            limits=limits,
        )


def api_key_checks(settings: Settings, limits: Limits) -> Buckets:
    """``POST /api/apikey`` per client address: as many as login attempts, in a budget of their own."""
    return limits.buckets(
        "apikey-check", settings.login_rate_per_ip, settings.login_rate_per_ip_window_seconds
    )


# Budgets of the link-token routes, per client address. Constants until config.py carries settings
# for them. An invitee opens the page and submits the form once or a few times; someone completing
# a reset submits a new password once or twice.
INVITE_ATTEMPTS_PER_ADDRESS = 30
INVITE_ATTEMPTS_WINDOW_SECONDS = 60
RESET_COMPLETIONS_PER_ADDRESS = 10
RESET_COMPLETIONS_WINDOW_SECONDS = 300


@dataclass
class LinkThrottle:
    """Per client address budgets of the public routes that take a link token. Every request costs
    a token, valid link or not: accepting an invitation and completing a reset hash a password (tens
    of milliseconds of CPU, on purpose), and accepting may try an existing account's password."""

    invitations: Buckets  # GET and POST of /api/invite/{token}, /invite/{token}
    password_resets: Buckets  # POST /api/user/password/reset/{token}, /password/reset/{token}

    @classmethod
    def with_defaults(cls, limits: Limits | None = None) -> LinkThrottle:
        limits = limits or LocalLimits()
        return cls(
            invitations=limits.buckets(
                "invite-link", INVITE_ATTEMPTS_PER_ADDRESS, INVITE_ATTEMPTS_WINDOW_SECONDS
            ),
            password_resets=limits.buckets(
                "reset-link", RESET_COMPLETIONS_PER_ADDRESS, RESET_COMPLETIONS_WINDOW_SECONDS
            ),
        )
