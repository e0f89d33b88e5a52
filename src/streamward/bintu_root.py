"""The bintu API at the bare root, for clients whose base URL cannot carry a path.

bintu clients append ``/stream``, ``/organisation``, ... to a configured base URL, and the SDKs
default to a bare host (BINTU-WIRE.md section 0). Streamward serves its API under ``/api``; requests
that arrive on the bintu root (``STREAMWARD_BINTU_ROOT_HOST``, matched against the Host header, or
``STREAMWARD_BINTU_ROOT_PORT``, a port ``streamward serve`` also listens on) are mapped ``/x`` ->
``/api/x``. Paths already under ``/api/`` (so ``/api/v1/splay`` keeps working) and ``/.well-known/``
are left as they are. The dashboard is not served there: its paths map into ``/api`` too, where
none of them exists, and so answer the API's 404 JSON.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from streamward.config import host_without_port

log = logging.getLogger(__name__)

API_PREFIX = "/api"
_UNMAPPED = ("/api/", "/.well-known/")


def api_path(path: str) -> str:
    """Where a path of the bintu root lives in Streamward's own path space."""
    if path == API_PREFIX or path.startswith(_UNMAPPED):
        return path
    return API_PREFIX + path


class BintuRoot:
    """Pure ASGI middleware; a no-op unless a root host or port is configured."""

    def __init__(self, app: ASGIApp, *, host: str | None, port: int | None) -> None:
        self.app = app
        self.host = host_without_port(host) if host else None
        self.port = port

    def _on_root(self, scope: Scope) -> bool:
        if self.port is not None:
            server = scope.get("server")
            if server is not None and server[1] == self.port:
                return True
        if self.host is not None:
            for name, value in scope["headers"]:
                if name == b"host":
                    return host_without_port(value.decode("latin-1")) == self.host
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (self.host or self.port) and self._on_root(scope):
            path = api_path(scope["path"])
            if path != scope["path"]:
                scope = dict(scope)
                scope["path"] = path
                raw_path = scope.get("raw_path")
                if raw_path is not None:
                    scope["raw_path"] = API_PREFIX.encode() + raw_path
        await self.app(scope, receive, send)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.error("cannot listen on %s:%s for the bintu API root: %s", host, port, exc)
        sys.exit(1)
    sock.set_inheritable(True)
    return sock


def run_server(app: ASGIApp | str, *, bintu_root_port: int | None, **options: Any) -> None:
    """``uvicorn.run(app, **options)``, listening on ``bintu_root_port`` too when it is set: one
    server, one application, two sockets (the application tells them apart by the local port).
    With ``workers`` > 1 (``app`` then an import string), every process listens on both sockets."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if bintu_root_port is None:
        uvicorn.run(app, **options)
        return
    config = uvicorn.Config(app, **options)
    if bintu_root_port == config.port:
        log.error("STREAMWARD_BINTU_ROOT_PORT must differ from the port of the API and dashboard")
        sys.exit(2)
    server = uvicorn.Server(config)
    sockets = [config.bind_socket(), _listen(config.host, bintu_root_port)]
    log.info("bintu API root on http://%s:%s", config.host, bintu_root_port)
    if config.workers > 1:
        Multiprocess(config, sockets=sockets).run()
        return
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(3)  # uvicorn's start-up failure status
