"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and costs throughput on every request)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamward.config import IPNetwork
from streamward.errors import error_body

MAX_BODY_BYTES = 1024 * 1024

_COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    # Invitation and password-reset links are secrets: never leak them through Referer.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
_PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


_FORWARDED_SCHEMES = {"http": {"http", "https"}, "websocket": {"ws", "wss"}}


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class ForwardedClient:
    """The one place that decides a request's client address and scheme.

    By default they are the connection's own: ``scope["client"]`` and ``scope["scheme"]`` as the
    server set them (``streamward serve`` turns uvicorn's proxy-header handling off, so the server
    does not rewrite them either). Only when ``trust_forwarded_for`` is on and the connection comes
    from one of ``trusted_proxies`` does this rewrite them from what that proxy added:

    - the client is the right-most ``X-Forwarded-For`` hop that is not itself a trusted proxy. Each
      proxy appends the address it was connected from, so everything left of that hop was written
      by the client and proves nothing. Text that is no IP address ends the walk: the nearest
      address the proxies vouched for stands instead (it ends up in rate-limit keys and the audit log);
    - the scheme is the right-most ``X-Forwarded-Proto`` value (the nearest proxy's), when it is one.

    Everything downstream (rate limits, audit, cookies' Secure flag, HSTS) reads
    ``request.client.host`` and ``request.url.scheme`` and nothing else. Add it outermost.
    """

    def __init__(
        self, app: ASGIApp, *, trust_forwarded_for: bool, trusted_proxies: Iterable[IPNetwork]
    ) -> None:
        self.app = app
        self.enabled = trust_forwarded_for
        self.trusted = tuple(trusted_proxies)

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.enabled and scope["type"] in _FORWARDED_SCHEMES:
            peer = scope.get("client")
            peer_address = _address(peer[0]) if peer else None
            if peer_address is not None and self._is_trusted(peer_address):
                scope = self._forwarded(scope)
        await self.app(scope, receive, send)

    def _forwarded(self, scope: Scope) -> Scope:
        forwarded_for: list[str] = []
        forwarded_proto = ""
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded_for += value.decode("latin-1").split(",")
            elif name == b"x-forwarded-proto":
                forwarded_proto = value.decode("latin-1")
        scope = dict(scope)
        client = self._client(reversed(forwarded_for))
        if client is not None:
            scope["client"] = (client, 0)
        scheme = forwarded_proto.rsplit(",", 1)[-1].strip().lower()
        if scheme in _FORWARDED_SCHEMES[scope["type"]]:
            scope["scheme"] = scheme
        return scope

    def _client(self, hops_right_to_left: Iterable[str]) -> str | None:
        client = None
        for hop in hops_right_to_left:
            address = _address(hop)
            if address is None:
                break
            client = str(address)
            if not self._is_trusted(address):
                break
        return client


_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class SecurityHeaders:
    """Security headers on every response: a strict CSP (no inline script) for dashboard pages, an
    even stricter one for the JSON API; ``no-store`` for anything but static files. ``/api/docs``
    (Swagger UI, served from the package) sets its own CSP first. ``Strict-Transport-Security`` on
    responses to HTTPS requests only, by the scheme ForwardedClient decided: browsers ignore it over
    plain HTTP (RFC 6797), and a site served over plain HTTP alone must not be told to require HTTPS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = list(_COMMON_HEADERS)
        if not path.startswith("/static/"):  # static URLs are versioned: browsers may cache them
            extra.append((b"cache-control", b"no-store"))
            # The docs page sets its own (Swagger UI's), which this does not overwrite.
            csp = _API_CSP if path.startswith(("/api/", "/.well-known/")) else _PAGE_CSP
            extra.append((b"content-security-policy", csp))
        if scope.get("scheme") == "https":
            extra.append(_HSTS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    """Refuse request bodies over the limit with 413, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = 0
                if announced > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not response_started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body("payload_too_large", f"The request body is larger than {self.max_bytes} bytes.")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so that FastAPI's body parser passes it on as 413
    instead of wrapping it into a generic 400."""

    def __init__(self) -> None:
        super().__init__(413, "The request body is too large.")
