"""Login throttling with token buckets.

Per client address every attempt costs a token; per account only failures do. A bucket refills
continuously, so the worst an attacker can do to a real user is keep one account's bucket empty
while they keep guessing, and it refills within one window after they stop: no long lockout.
Accounts are keyed by the email as typed (normalised), known or not, so throttling does not tell
which emails exist.

The public routes behind a link token (an invitation's preview and acceptance, setting a password
with a reset link) have per-address budgets of their own (``LinkThrottle``).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from streamward.config import Settings
from streamward.errors import RateLimited


class TokenBuckets:
    """In-process buckets; bounded memory (least recently used keys are dropped first)."""

    def __init__(self, capacity: int, window_seconds: float, *, max_keys: int = 100_000) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / window_seconds  # tokens per second
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)

    def _level(self, key: str, now: float) -> float:
        tokens, stamp = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - stamp) * self.rate)

    def retry_after(self, key: str) -> int | None:
        """Seconds until one token is available, or None when one is available now."""
        level = self._level(key, time.monotonic())
        if level >= 1:
            return None
        return max(1, math.ceil((1 - level) / self.rate))

    def take(self, key: str) -> int | None:
        """Spend one token; when none is left spend nothing and return the seconds to wait."""
        now = time.monotonic()
        level = self._level(key, now)
        if level < 1:
            return max(1, math.ceil((1 - level) / self.rate))
        self._buckets[key] = (level - 1, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return None

    def charge(self, key: str) -> None:
        """Spend one token, or refuse: 429 ``rate_limited`` with Retry-After."""
        wait = self.take(key)
        if wait:
            raise RateLimited(wait)

    def clear(self) -> None:
        self._buckets.clear()


@dataclass
class LoginThrottle:
    per_address: TokenBuckets
    failures_per_account: TokenBuckets
    # When each throttled key's refusal was last recorded: a flood of refused attempts leaves one
    # audit entry per key and window, not one database write per request.
    _noted: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def first_refusal(self, key: str, window_seconds: float) -> bool:
        now = time.monotonic()
        last = self._noted.get(key)
        if last is not None and now - last < window_seconds:
            return False
        self._noted[key] = now
        self._noted.move_to_end(key)
        while len(self._noted) > 100_000:
            self._noted.popitem(last=False)
        return True

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginThrottle:
        return cls(
            per_address=TokenBuckets(settings.login_rate_per_ip, settings.login_rate_per_ip_window_seconds),
            failures_per_account=TokenBuckets(
                settings.login_failures_per_account, settings.login_failures_per_account_window_seconds
            ),
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

    invitations: TokenBuckets  # GET and POST of /api/invite/{token}, /invite/{token}
    password_resets: TokenBuckets  # POST /api/user/password/reset/{token}, /password/reset/{token}

    @classmethod
    def with_defaults(cls) -> LinkThrottle:
        return cls(
            invitations=TokenBuckets(INVITE_ATTEMPTS_PER_ADDRESS, INVITE_ATTEMPTS_WINDOW_SECONDS),
            password_resets=TokenBuckets(RESET_COMPLETIONS_PER_ADDRESS, RESET_COMPLETIONS_WINDOW_SECONDS),
        )
