"""Outbound HTTP for webhooks: checked addresses only, no redirects, a hard deadline.

The host is resolved here and every address is checked (events.egress); the request then connects
to the checked address itself, with the original name kept for the Host header and for TLS (SNI and
certificate verification). There is no second resolution between the check and the connection,
so DNS rebinding cannot slip a private address in.

Connections are kept for the next delivery to the same receiver: one connection pool per host name
(never shared between names, so a TLS connection verified for one name never carries a request for
another on the same address), and the receiver's answer is read, up to ``MAX_ANSWER_BYTES``, so that
its connection can go back to the pool. A new address for the name (DNS changed) is a new connection.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections import OrderedDict
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
from streamward.kept import KeptBy

USER_AGENT = "Streamward-Webhooks/1"
# Read (and dropped) of an answer so its connection can be reused; a longer answer closes it.
MAX_ANSWER_BYTES = 64 * 1024
# Receivers whose connection pools are kept; the least recently used one is closed beyond this.
MAX_RECEIVERS = 64
# Webhook URLs whose parsed form is kept (a worker delivers to the same few URLs again and again).
MAX_KEPT_URLS = 1024


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None


_NO_COOKIES = _NoCookies()


class _ReceiverClient(httpx.AsyncClient):
    """A receiver's cookies are neither kept nor sent. A receiver's pool serves every organisation
    whose webhook names that host, so a cookie one receiver set would ride along on another
    organisation's deliveries; and looking for cookies in every answer cost 5 % of a delivery."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, _cookies: object) -> None:
        pass  # httpx.AsyncClient sets its (empty) cookies on construction


@dataclass(frozen=True)
class _Destination:
    """What a webhook URL's requests are built from, parsed once per URL."""

    scheme: str
    host: str
    port: int
    url: httpx.URL
    host_header: str  # the name (not the address connected to), and the port when the URL has one
    extensions: dict[str, str]


def _destination(url: str) -> _Destination:
    scheme, host, port = parse_webhook_url(url)  # raises UnsafeTarget: nothing is kept
    parsed = httpx.URL(url)
    netloc = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets
    host_header = netloc if parsed.port is None else f"{netloc}:{port}"
    extensions = {"sni_hostname": host} if scheme == "https" else {}
    return _Destination(scheme, host, port, parsed, host_header, extensions)


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
        self.max_connections = max_connections
        self._clients: OrderedDict[tuple[str, str, int], httpx.AsyncClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._destinations: KeptBy[str, _Destination] = KeptBy(MAX_KEPT_URLS)
        # The URL with the checked address in place of the name, by (URL, address).
        self._pinned: KeptBy[tuple[str, str], httpx.URL] = KeptBy(MAX_KEPT_URLS)

    def _client_for(self, scheme: str, host: str, port: int) -> httpx.AsyncClient:
        key = (scheme, host.lower(), port)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = self._clients[key] = _ReceiverClient(
            follow_redirects=False,
            timeout=httpx.Timeout(self.timeout_seconds),
            limits=httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=20),
            headers={"user-agent": USER_AGENT},
            trust_env=False,  # no proxy from the environment: it would connect to names we did not check
        )
        if len(self._clients) > MAX_RECEIVERS:
            _, evicted = self._clients.popitem(last=False)
            task = asyncio.get_running_loop().create_task(evicted.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def post(
        self, url: str, *, content: bytes, headers: dict[str, str], timeout_seconds: float | None = None
    ) -> SendResult:
        deadline = timeout_seconds or self.timeout_seconds
        started = time.perf_counter()

        def elapsed() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            target = self._destinations.get(url, _destination)
            # Resolved and checked at every delivery: the name may point elsewhere by now.
            addresses = await resolve_public(
                target.host, target.port, allow_private=self.allow_private, resolver=self.resolver
            )
        except UnsafeTarget as refused:
            return SendResult(None, elapsed(), error=refused.message, refused=True)

        pinned = self._pinned.get((url, addresses[0]), lambda _: target.url.copy_with(host=addresses[0]))
        try:
            async with asyncio.timeout(deadline):
                client = self._client_for(target.scheme, target.host, target.port)
                request = client.build_request(
                    "POST",
                    pinned,
                    content=content,
                    headers={**headers, "host": target.host_header},
                    extensions=target.extensions,
                    timeout=httpx.Timeout(deadline),
                )
                response = await client.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException):
            return SendResult(None, elapsed(), error=f"timed out after {deadline:g} s")
        except httpx.HTTPError as exc:
            return SendResult(None, elapsed(), error=f"connection failed: {type(exc).__name__}")
        await _drain(response, max(0.0, deadline - (time.perf_counter() - started)))
        return SendResult(
            response.status_code,
            elapsed(),
            retry_after_seconds=parse_retry_after(response.headers.get("retry-after")),
        )


async def _drain(response: httpx.Response, seconds: float) -> None:
    """Only the status line and headers count; the answer is read to its end when it is short and
    comes within the deadline, which lets its connection serve the next delivery, and otherwise
    dropped with its connection. Either way the result stands."""
    try:
        async with asyncio.timeout(seconds):
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > MAX_ANSWER_BYTES:
                    break
    except (TimeoutError, httpx.HTTPError):
        pass
    finally:
        await response.aclose()
