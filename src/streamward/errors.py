"""Domain errors and the one place that turns any failure into ``{"error": {"code", "message"}}``.

Error codes are part of the API contract: clients branch on ``code``, never on ``message``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 400
    code = "bad_request"
    message = "The request cannot be processed."
    # True: the request's transaction is committed although the request fails (audit of a refusal).
    keep_changes = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.details = details
        self.headers = headers
        super().__init__(self.message)


class BadRequest(AppError):
    pass


class Unauthenticated(AppError):
    status_code = 401
    code = "unauthenticated"
    message = "Credentials are missing or no longer valid."


class InvalidCredentials(AppError):
    status_code = 401
    code = "invalid_credentials"
    message = "Email or password is wrong."


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"
    message = "Your role does not allow this."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = "Not found."


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"
    message = "Too many attempts; try again later."

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            f"Too many attempts; try again in {retry_after_seconds} s.",
            headers={"Retry-After": str(retry_after_seconds)},
        )


class InvalidText(BadRequest):
    """Text the application never accepts: a control character (NUL and the rest of C0, DEL; line
    breaks and TAB outside multi-line text), a lone surrogate, or bytes that are not UTF-8."""

    code = "invalid_text"
    message = "The request contains a control character or text that is not UTF-8."


class TooDeep(BadRequest):
    code = "too_deep"
    message = "The JSON body is nested too deeply."


class InvalidTime(BadRequest):
    code = "invalid_time"
    message = "Times are ISO 8601: YYYY-MM-DD, optionally with a time and an offset (UTC when none)."


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _validation_details(exc: RequestValidationError) -> tuple[int, str, str, list[dict[str, Any]]]:
    errors = exc.errors()

    def detail(err: Any) -> dict[str, Any]:
        field = ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "body"
        return {"field": field, "problem": err.get("msg", "invalid")}

    # A body that is not JSON at all is a different mistake from a field of the wrong type.
    if any(err.get("type") == "json_invalid" for err in errors):
        return 400, "malformed_json", "The request body is not valid JSON.", []
    # Control characters are refused with one code wherever they are found (see streamward.edge):
    # a field's own type finds those the edge lets through (a line break in one-line text).
    invalid_text = [detail(err) for err in errors if err.get("type") == InvalidText.code]
    if invalid_text:
        return 400, InvalidText.code, InvalidText.message, invalid_text
    return 422, "validation_error", "Some fields are missing or invalid.", [detail(err) for err in errors]


# Renders a failure as a page for dashboard requests: (request, status, code, message, error) -> response.
HtmlRenderer = Callable[[Request, int, str, str, Exception], Awaitable[Response]]
_MACHINE_PREFIXES = ("/api", "/.well-known", "/static", "/metrics", "/healthz", "/readyz")


def _is_page_request(request: Request) -> bool:
    return not request.url.path.startswith(_MACHINE_PREFIXES)


def install_error_handlers(app: FastAPI, html: HtmlRenderer | None = None) -> None:
    """One JSON error shape for the API; friendly pages for the dashboard when ``html`` is given."""
    # Kept for pure ASGI middleware, which answers before the exception handlers (send_app_error).
    app.state.html_error_renderer = html

    async def respond(
        request: Request,
        status: int,
        code: str,
        message: str,
        exc: Exception,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        if html is not None and _is_page_request(request):
            page = await html(request, status, code, message, exc)
            # A refusal's headers (Retry-After on a 429) belong on the page as much as on JSON.
            for name, value in (headers or {}).items():
                page.headers.setdefault(name, value)
            return page
        return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        return await respond(request, exc.status_code, exc.code, exc.message, exc, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        status, code, message, details = _validation_details(exc)
        return await respond(request, status, code, message, exc, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404:
            message = "Not found."
        return await respond(
            request, exc.status_code, code, message, exc, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # The traceback goes to the log, never to the client.
        # The route template, never the path: paths can carry invitation and reset-link tokens.
        route = getattr(request.scope.get("route"), "path", "unmatched")
        log.exception("unhandled error on %s %s", request.method, route)
        return await respond(request, 500, "internal_error", "Something went wrong on our side.", exc)


async def send_app_error(scope: Scope, receive: Receive, send: Send, error: AppError) -> None:
    """Answer ``error`` from pure ASGI middleware (outside FastAPI's exception handlers) the way the
    handlers would: a page for the dashboard, the JSON error shape for the API."""
    request = Request(scope, receive)
    html: HtmlRenderer | None = getattr(getattr(scope.get("app"), "state", None), "html_error_renderer", None)
    response: Response
    if html is not None and _is_page_request(request):
        response = await html(request, error.status_code, error.code, error.message, error)
    else:
        body = error_body(error.code, error.message, error.details)
        response = JSONResponse(body, status_code=error.status_code, headers=error.headers)
    await response(scope, receive, send)
