"""CORS for the bintu API and the token service: browsers on the customer's own site (the player,
the webcaster SDK, stream-list pages) call them cross-origin.

Pure ASGI middleware (no BaseHTTPMiddleware). On the paths that browsers of other origins may call
(everything under ``/api/`` but the operator and ingest APIs, and the JWKS) it answers preflights
itself and adds ``Access-Control-Allow-Origin`` to responses. These paths take their credentials
from headers only (``X-BINTU-*``), never from cookies, so allowing any origin exposes nothing the
page's own script did not already hold: ``Access-Control-Allow-Credentials`` is never sent, and
browsers then send no cookies with these requests. The dashboard's paths get no CORS header at
all, so a page of another origin cannot read them.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamward.errors import error_body

# Paths of the dashboard's own machinery and of machines that are never browsers.
_NOT_CROSS_ORIGIN = ("/api/operator", "/api/ingest")
_CROSS_ORIGIN_PREFIXES = ("/api/", "/.well-known/jwks.json")

ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# What the bintu clients send (SDKs: Accept + Content-Type even on GET; credentials in X-BINTU-*),
# plus conditional-request headers for ETags. Browsers compare these case-insensitively.
ALLOWED_HEADERS = (
    b"Accept, Accept-Language, Content-Language, Content-Type, X-BINTU-APIKEY, X-BINTU-TOKEN, "
    b"X-BINTU-PLAYERKEY, X-Requested-With, If-None-Match, If-Match"
)
EXPOSED_HEADERS = b"Link, ETag, Retry-After, X-Request-ID"
PREFLIGHT_MAX_AGE = b"600"


def is_cross_origin_path(path: str) -> bool:
    return path.startswith(_CROSS_ORIGIN_PREFIXES) and not path.startswith(_NOT_CROSS_ORIGIN)


class Cors:
    """``allowed_origins``: None for any origin (answered ``*``), else the exact origins allowed."""

    def __init__(self, app: ASGIApp, *, allowed_origins: frozenset[str] | None) -> None:
        self.app = app
        self.allowed_origins = allowed_origins

    def _allow_origin(self, origin: bytes | None) -> bytes | None:
        """The Access-Control-Allow-Origin value for this request, or None (no CORS answer)."""
        if origin is None:
            return None
        if self.allowed_origins is None:
            return b"*"
        return origin if origin.decode("latin-1").lower() in self.allowed_origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_cross_origin_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        origin = preflight_method = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight_method = value
        allow_origin = self._allow_origin(origin)
        # With a list of origins the answer depends on Origin: caches must key on it.
        vary = [(b"vary", b"Origin")] if self.allowed_origins is not None else []

        if scope["method"] == "OPTIONS" and origin is not None and preflight_method is not None:
            await self._preflight(send, allow_origin, vary)
            return

        cors_headers = list(vary)
        if allow_origin is not None:
            cors_headers += [
                (b"access-control-allow-origin", allow_origin),
                (b"access-control-expose-headers", EXPOSED_HEADERS),
            ]
        if not cors_headers:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if not name.lower().startswith(b"access-control-")
                ]
                message["headers"] = headers + cors_headers
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(
        self, send: Send, allow_origin: bytes | None, vary: list[tuple[bytes, bytes]]
    ) -> None:
        if allow_origin is None:
            # Not an allowed origin: an answer without CORS headers, which the browser refuses.
            body = json.dumps(
                error_body("origin_not_allowed", "This origin may not call the API from a browser.")
            ).encode()
            headers = [
                *vary,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers = [
            *vary,
            (b"access-control-allow-origin", allow_origin),
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-allow-headers", ALLOWED_HEADERS),
            (b"access-control-max-age", PREFLIGHT_MAX_AGE),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
