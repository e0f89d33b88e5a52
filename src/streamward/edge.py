"""Text at the edge: one rule for every character that enters the application.

No request reaches a route with a control character in its path, its query string, or a string (or
key) of its JSON or form body; nor with text that is not UTF-8; nor with JSON nested deeper than
``MAX_JSON_DEPTH``. Such a request is answered 400 (``invalid_text``, ``too_deep``) here, before
routing: PostgreSQL refuses NUL in text outright (a 500 on any route that stores or compares what a
client typed), SQLite stores it silently, and a lone surrogate cannot be encoded for either.

Which characters (``forbidden``):

* paths and query strings: every C0 control character (U+0000 to U+001F) and DEL. Nothing sent
  there is multi-line text, so TAB, LF and CR are refused too;
* bodies: the same except TAB, LF and CR, which multi-line text (a role description, a textarea of
  tags) legitimately holds. Whether a *field* may hold them is its type's business:
  ``streamward.schemas.ColumnText`` refuses them in one-line fields (the default) with the same
  ``invalid_text`` code;
* everywhere: lone surrogates (U+D800 to U+DFFF), which a JSON ``\\ud800`` escape can produce but no
  database can store.

Cost: a request without query string and body costs one regular-expression search over its path.
A JSON or form body is read whole (``BodySizeLimit`` caps it at 1 MiB before this runs), parsed once
more than the route does, scanned, and handed on unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamward.errors import AppError, BadRequest, InvalidText, TooDeep, send_app_error

# Deeper than any request body of this API (they nest three levels at most), far below the
# interpreter's recursion limit that a 100,000-deep document hits in the JSON parser.
MAX_JSON_DEPTH = 32

_SURROGATES = "\ud800-\udfff"
ONE_LINE_FORBIDDEN = re.compile(f"[\x00-\x1f\x7f{_SURROGATES}]")
MULTI_LINE_FORBIDDEN = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f{_SURROGATES}]")


def forbidden(multiline: bool) -> re.Pattern[str]:
    """The characters refused in one-line text, or in multi-line text (which keeps TAB, LF, CR)."""
    return MULTI_LINE_FORBIDDEN if multiline else ONE_LINE_FORBIDDEN


def _refuse(where: str, field: str | None = None, message: str | None = None) -> InvalidText:
    details = {"in": where} | ({"field": field} if field is not None else {})
    return InvalidText(message, details=details)


def _decoded(raw: bytes) -> str:
    """Percent-decoded, ``+`` as space (form and query encoding), strictly UTF-8."""
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")


def check_form_encoded(raw: bytes, *, where: str, pattern: re.Pattern[str]) -> None:
    """A query string or an ``application/x-www-form-urlencoded`` body, split the way Starlette
    splits it (on ``&``), each name and value decoded strictly."""
    for part in raw.split(b"&"):
        if not part:
            continue
        raw_name, _, raw_value = part.partition(b"=")
        try:
            name = _decoded(raw_name)
        except UnicodeDecodeError:
            raise _refuse(where, message="A parameter name is not UTF-8.") from None
        try:
            value = _decoded(raw_value)
        except UnicodeDecodeError:
            raise _refuse(where, name, f"'{_printable(name)}' is not UTF-8.") from None
        if pattern.search(name):
            raise _refuse(where, _printable(name), "A parameter name contains a control character.")
        if pattern.search(value):
            raise _refuse(where, name, f"'{name}' contains a control character.")


def _printable(text: str) -> str:
    return ONE_LINE_FORBIDDEN.sub("?", text)


def check_path(scope: Scope) -> None:
    path: str = scope["path"]
    if ONE_LINE_FORBIDDEN.search(path):
        raise _refuse("path", message="The path contains a control character.")
    raw: bytes | None = scope.get("raw_path")
    # Servers decode %XX with replacement characters; bytes that are not UTF-8 are refused instead.
    if raw and b"%" in raw:
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse("path", message="The path is not UTF-8.") from None


def check_json(body: bytes) -> None:
    """Parsed as the routes parse it (``json.loads`` of the bytes), scanned string by string."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse("body", message="The body is not UTF-8.") from None
    try:
        document = json.loads(body)
    except RecursionError:
        raise TooDeep(details={"maxDepth": MAX_JSON_DEPTH}) from None
    except ValueError:
        return  # not JSON: the route answers it (malformed_json)
    _scan_json(document)


def _scan_json(document: Any) -> None:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if MULTI_LINE_FORBIDDEN.search(value):
                raise _refuse("body", _locate(document), "A text field contains a control character.")
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise TooDeep(details={"maxDepth": MAX_JSON_DEPTH})
            if isinstance(value, dict):
                for key, item in value.items():
                    if MULTI_LINE_FORBIDDEN.search(key):
                        raise _refuse("body", _locate(document), "A key contains a control character.")
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _locate(document: Any) -> str:
    """The dotted path of the first offending string or key (only walked once one was found; the
    document is known to be at most MAX_JSON_DEPTH deep along the way)."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str) and MULTI_LINE_FORBIDDEN.search(value):
            return path or "body"
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{_printable(key)}" if path else _printable(key)
                if MULTI_LINE_FORBIDDEN.search(key):
                    return child
                stack.append((item, child))
        elif isinstance(value, list):
            stack.extend(
                (item, f"{path}.{index}" if path else str(index)) for index, item in enumerate(value)
            )
    return "body"


async def check_multipart(scope: Scope, body: bytes) -> None:
    """Names and text values of a multipart form (file contents are not text: not looked into)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, replay).form()
    except Exception:  # unreadable: the route that reads it answers, as it would have anyway
        return
    try:
        for name, value in form.multi_items():
            if MULTI_LINE_FORBIDDEN.search(name):
                raise _refuse("body", _printable(name), "A field name contains a control character.")
            if not isinstance(value, UploadFile) and MULTI_LINE_FORBIDDEN.search(value):
                raise _refuse("body", name, f"'{name}' contains a control character.")
    finally:
        await form.close()


def _body_kind(scope: Scope) -> str | None:
    """json, form, multipart, or None when no route parses this body as text (or there is none)."""
    content_type = length = None
    chunked = False
    content_types = 0
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            content_types += 1
            content_type = value.decode("latin-1").split(";", 1)[0].strip().lower()
        elif name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = True
    if not chunked and (length is None or length == b"0"):
        return None
    if content_types > 1:
        # Starlette reads the first of several: a scan chosen by another one would check nothing.
        raise BadRequest("Send one Content-Type header.", code="ambiguous_content_type")
    # FastAPI reads a body without a content type as JSON, and any application/*+json.
    if content_type is None or content_type == "application/json":
        return "json"
    if content_type.startswith("application/") and content_type.endswith("+json"):
        return "json"
    if content_type == "application/x-www-form-urlencoded":
        return "form"
    if content_type == "multipart/form-data":
        return "multipart"
    return None


class EdgeText:
    """Pure ASGI middleware enforcing the module's rule (see its docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_path(scope)
            query: bytes = scope.get("query_string", b"")
            if query:
                check_form_encoded(query, where="query", pattern=ONE_LINE_FORBIDDEN)
            kind = _body_kind(scope)
        except AppError as refused:
            await send_app_error(scope, receive, send, refused)
            return
        if kind is None:
            await self.app(scope, receive, send)
            return

        # Read the whole body (BodySizeLimit, outside, stops it at its limit), then replay it.
        chunks: list[bytes] = []
        pending: list[Message] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                pending.append(message)  # a disconnect: handed on after the body
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            if pending:
                return pending.pop(0)
            return await receive()

        try:
            if kind == "json":
                check_json(body)
            elif kind == "form":
                check_form_encoded(body, where="body", pattern=MULTI_LINE_FORBIDDEN)
            else:
                await check_multipart(scope, body)
        except AppError as refused:
            await send_app_error(scope, replay, send, refused)
            return
        await self.app(scope, replay, send)
