"""What the request being served is, for the log lines, the audit log and the metrics it causes.

Set by the observability middleware (request id, route), completed by authentication (the
organisation) and by the services that decide an outcome worth counting (a login's). Kernel: it
imports nothing of the features, so any layer may read it. The context is one mutable object per
request: FastAPI may run parts of a request in child tasks or threads (their context is a copy),
and what they note must still reach the middleware.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass
class RequestContext:
    request_id: str
    method: str = ""
    route: str | None = None  # the route template once routed (/api/user/{user_id}), never the raw path
    status: int | None = None
    duration_ms: float | None = None
    organisation_id: uuid.UUID | None = None
    # Outcomes noted by the services, counted by the middleware once the response is sent.
    login_outcome: str | None = None
    rate_limit: str | None = None  # the name of the limit that refused the request


_current: ContextVar[RequestContext | None] = ContextVar("streamward_request", default=None)


def current_request() -> RequestContext | None:
    """The request being served, or None (the delivery worker, the CLI, start-up)."""
    return _current.get()


def current_request_id() -> str | None:
    context = _current.get()
    return context.request_id if context is not None else None


def enter_request(context: RequestContext) -> Token[RequestContext | None]:
    """Make ``context`` current; returns the token for ``leave_request``."""
    return _current.set(context)


def leave_request(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


def note_organisation(organisation_id: uuid.UUID) -> None:
    if (context := _current.get()) is not None:
        context.organisation_id = organisation_id


def note_login(outcome: str) -> None:
    """A login attempt ended: success, invalid_credentials, rate_limited, ..."""
    if (context := _current.get()) is not None:
        context.login_outcome = outcome


def note_rate_limit(name: str) -> None:
    """A rate limit refused this request (counted by limit name)."""
    if (context := _current.get()) is not None:
        context.rate_limit = name
