"""What one process holds for its whole life: settings, database, secret box, rate limiters."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from streamward.authn.ratelimit import LoginThrottle
from streamward.config import Settings
from streamward.crypto import SecretBox
from streamward.db import Database


@dataclass
class Runtime:
    settings: Settings
    database: Database
    secret_box: SecretBox
    login_throttle: LoginThrottle = field(init=False)

    def __post_init__(self) -> None:
        self.login_throttle = LoginThrottle.from_settings(self.settings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(
            settings=settings,
            database=Database(settings.effective_database_url, pool_size=settings.db_pool_size),
            secret_box=SecretBox(settings.secret_key_bytes),
        )


async def get_runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs a plain `def` dependency in a thread pool, on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime


def client_address(request: Request, *, trust_forwarded_for: bool) -> str:
    if trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",", 1)[0].strip()
        if first:
            return first
    return request.client.host if request.client else "unknown"
