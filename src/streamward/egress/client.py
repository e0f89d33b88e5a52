"""Outbound HTTP for webhooks: checked addresses only, no redirects, a hard deadline.

The host is resolved here and every address is checked (events.egress); the request then connects
to the checked address itself, with the original name kept for the Host header and for TLS (SNI and
certificate verification). There is no second resolution between the check and the connection,
so DNS rebinding cannot slip a private address in.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from streamward.egress.guard import (
    Resolver,
    UnsafeTarget,
    parse_webhook_url,
    resolve_public,
    system_resolver,
)

USER_AGENT = "Streamward-Webhooks/1"


@dataclass(frozen=True)
class SendResult:
    status_code: int | None
    duration_ms: int
    error: str | None = None
    refused: bool = False  # the target was not allowed; nothing was sent
    retry_after_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class EgressClient:
    def __init__(
        self,
        *,
        allow_private: bool,
        timeout_seconds: float,
        resolver: Resolver = system_resolver,
        max_connections: int = 100,
    ) -> None:
        self.allow_private = allow_private
        self.timeout_seconds = timeout_seconds
        self.resolver = resolver
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
            headers={"user-agent": USER_AGENT},
            trust_env=False,  # no proxy from the environment: it would connect to names we did not check
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(
        self, url: str, *, content: bytes, headers: dict[str, str], timeout_seconds: float | None = None
    ) -> SendResult:
        deadline = timeout_seconds or self.timeout_seconds
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            scheme, host, port = parse_webhook_url(url)
            addresses = await resolve_public(
                host, port, allow_private=self.allow_private, resolver=self.resolver
            )
        except UnsafeTarget as refused:
            return SendResult(None, elapsed(), error=refused.message, refused=True)

        original = httpx.URL(url)
        pinned = original.copy_with(host=addresses[0])
        extensions = {"sni_hostname": host} if scheme == "https" else {}
        netloc = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
        host_header = netloc if original.port is None else f"{netloc}:{port}"
        try:
            async with asyncio.timeout(deadline):
                request = self._client.build_request(
                    "POST",
                    pinned,
                    content=content,
                    headers={**headers, "host": host_header},
                    extensions=extensions,
                    timeout=httpx.Timeout(deadline),
                )
                # Only the status line and headers matter; the body is not read at all.
                response = await self._client.send(request, stream=True)
                await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return SendResult(None, elapsed(), error=f"timed out after {deadline:g} s")
        except httpx.HTTPError as exc:
            return SendResult(None, elapsed(), error=f"connection failed: {type(exc).__name__}")
        return SendResult(
            response.status_code,
            elapsed(),
            retry_after_seconds=parse_retry_after(response.headers.get("retry-after")),
        )
