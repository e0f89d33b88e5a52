"""One pure ASGI middleware for what the operator sees of each request: its id, its metrics, its
access-log line.

- The request id is the client's ``X-Request-ID`` when that is a sane value (1 to 128 characters of
  ``A-Z a-z 0-9 . _ : -``: it ends up in log lines and the audit log, so nothing else is taken),
  else a new random one. Every response carries it back, refusals and failures included, and
  every log line and audit entry written while serving the request names it.
- Metrics count the request by route *template*, method and status (see streamward.metrics).
- The access line (logger ``streamward.access``, INFO) has method, route template, status, duration
  and request id, never the path or query: invitation and reset links carry their token there.

Added just inside ForwardedClient and BintuRoot (neither ever answers a request itself): the route
template is read from the scope the router wrote into, after the application ran, and those two
hand a copy of the scope inward when they rewrite it.
"""

from __future__ import annotations

import logging
import random
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamward.errors import AppError, send_app_error
from streamward.metrics import UNMATCHED_ROUTE, Metrics
from streamward.request_context import RequestContext, enter_request, leave_request

REQUEST_ID_HEADER = b"x-request-id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger("streamward.access")
log = logging.getLogger(__name__)


class InternalError(AppError):
    status_code = 500
    code = "internal_error"
    message = "Something went wrong on our side."


def request_id_of(scope: Scope) -> str:
    """The client's request id when it is sane, else a new one."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    # 128 random bits, as a uuid4 has. An id names a request and is no secret (a client may send its
    # own): the random module's generator (seeded from the system's, reseeded in a forked worker)
    # gives them without a system call each; os.urandom was 4 % of the hot read's CPU under load.
    return f"{random.getrandbits(128):032x}"


def route_template(scope: Scope) -> str:
    """The matched route's template (``/api/user/{user_id}``), or ``unmatched``."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str) and template:
        return template
    return UNMATCHED_ROUTE


class Observability:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        context = RequestContext(request_id_of(scope), scope["method"])
        token = enter_request(context)
        id_header = (REQUEST_ID_HEADER, context.request_id.encode("ascii"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            context.route = route_template(scope)
            # Logged here, with the request id and route template (the framework's own handler,
            # outside this middleware, would log without either, and answer without the id).
            log.exception("unhandled error")
            if status:  # the response has started: nothing can be said any more
                raise
            await send_app_error(scope, receive, send_with_id, InternalError())
        finally:
            self._observe(scope, context, status or 500, time.perf_counter() - started)
            leave_request(token)

    def _observe(self, scope: Scope, context: RequestContext, status: int, seconds: float) -> None:
        route = context.route = route_template(scope)
        context.status = status
        metrics = self.metrics
        metrics.observe_request(route, context.method, status, seconds)
        if context.login_outcome is not None:
            metrics.observe_login(context.login_outcome)
        if status == 429:
            metrics.observe_rate_limit(context.rate_limit or route)
        if access_log.isEnabledFor(logging.INFO):
            context.duration_ms = round(seconds * 1000, 3)
            access_log.info(
                "%s %s %s %.1fms",
                context.method,
                route,
                status,
                seconds * 1000,
                extra={"method": context.method, "status": status, "duration_ms": context.duration_ms},
            )
