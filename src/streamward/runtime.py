"""What one process holds for its whole life: settings, database, secret box, rate limiters,
the outbound HTTP client and the delivery worker's wake-up signal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Request

from streamward.config import Settings
from streamward.crypto import SecretBox
from streamward.db import Database
from streamward.egress.client import EgressClient
from streamward.egress.guard import Resolver, system_resolver
from streamward.limits import (
    Buckets,
    Limits,
    LinkThrottle,
    LoginThrottle,
    api_key_checks,
    limits_for,
)


@dataclass
class Runtime:
    settings: Settings
    database: Database
    secret_box: SecretBox
    # Where rate limits are kept: Redis shared by every process (STREAMWARD_REDIS_URL), else memory.
    limits: Limits = field(init=False)
    login_throttle: LoginThrottle = field(init=False)
    # Invitation and reset links, per client address.
    link_throttle: LinkThrottle = field(init=False)
    # POST /api/apikey, per client address.
    apikey_checks: Buckets = field(init=False)
    # How webhook hosts are resolved; tests replace it to simulate DNS (rebinding included).
    webhook_resolver: Resolver = system_resolver
    # Set after a request commits events, so an in-process worker sends them without waiting to poll.
    outbox_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _egress: EgressClient | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.limits = limits_for(self.settings)
        self.login_throttle = LoginThrottle.from_settings(self.settings, self.limits)
        self.link_throttle = LinkThrottle.with_defaults(self.limits)
        self.apikey_checks = api_key_checks(self.settings, self.limits)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(
            settings=settings,
            database=Database(settings.effective_database_url, pool_size=settings.db_pool_size),
            secret_box=SecretBox(settings.secret_key_bytes),
        )

    @property
    def egress(self) -> EgressClient:
        if self._egress is None:
            self._egress = EgressClient(
                allow_private=self.settings.allow_private_webhook_targets,
                timeout_seconds=self.settings.webhook_timeout_seconds,
                resolver=lambda host, port: self.webhook_resolver(host, port),
            )
        return self._egress

    async def aclose(self) -> None:
        if self._egress is not None:
            await self._egress.aclose()
            self._egress = None
        await self.limits.aclose()
        await self.database.dispose()


def runtime_of(request: Request) -> Runtime:
    """The process runtime of the application serving ``request``."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread pool, on every request.
    return runtime_of(request)


def client_address(request: Request, *, trust_forwarded_for: bool | None = None) -> str:
    """The client's IP address, as ForwardedClient decided it (the connection's peer, or what a
    trusted proxy forwarded). ``trust_forwarded_for`` is ignored: kept only so that callers written
    before that middleware keep working; the setting is honoured in the middleware, once."""
    return request.client.host if request.client else "unknown"
