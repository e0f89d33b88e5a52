"""Logging for ``streamward serve`` and ``streamward worker``, set up once, here.

``STREAMWARD_LOG_FORMAT=text`` (default) writes readable lines; ``json`` one JSON object per line
with ``time``, ``level``, ``logger``, ``message`` and, inside a request, ``request_id``, ``route``
(the template, never the raw path), ``organisation_id`` once authenticated; the access line adds
``method``, ``status`` and ``duration_ms``.

Lines of INFO and below are written in batches, at most ``STREAMWARD_LOG_FLUSH_SECONDS`` (0.5) after
they were logged (and at once when a batch reaches 64 KiB, a warning or an error comes, or the
process exits); 0 writes every line as it comes. Measured under load on a cached player read, the
one write to stderr per access line was 6.7 % of the server's time.

Secrets never reach the log, whatever the level:
- libraries whose debug output carries SQL parameters or full URLs (SQLAlchemy, the database
  drivers, httpx) are held at WARNING even when Streamward logs at DEBUG: their URLs can carry
  invitation and reset tokens, their parameters credential digests;
- as a last net, anything shaped like one of Streamward's credentials (``swt_``, ``swk_``, ``swi_``,
  ``swr_``, ``swp_`` tokens, ``whsec_`` secrets, JWTs) or a password inside a URL is masked in
  every line before it is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from streamward.config import Settings
from streamward.request_context import current_request

# Loggers that write parameters or URLs at INFO/DEBUG (and of no use to an operator below WARNING).
QUIET_LIBRARIES = (
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "httpx",
    "httpcore",
    "hpack",
    "multipart",
    "python_multipart",
    "asyncio",
    "redis",
    "alembic.runtime.plugins",
)

_SECRETS = (
    # No "\b" before the prefixes: after a percent-encoded separator ("%2Fswi_...") there is none.
    (re.compile(r"(sw[tkirp])_[A-Za-z0-9_-]{16,}"), r"\1_[redacted]"),
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]{16,}"), "whsec_[redacted]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "[redacted-jwt]"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s\"']*):[^@\s\"']+@"), r"\1:[redacted]@"),
)

# Attributes a log call may pass with ``extra=`` that the JSON line carries as fields.
_EXTRA_FIELDS = ("method", "status", "duration_ms")

_HANDLER_MARK = "streamward_handler"


# What every pattern above needs somewhere in the line: most lines (access lines among them) have
# none of these, and substring tests cost a fraction of running the patterns on every line.
_SECRET_MARKERS = ("swt_", "swk_", "swi_", "swr_", "swp_", "whsec_", "eyJ", "://")


def redact(text: str) -> str:
    for marker in _SECRET_MARKERS:  # a loop, not any(<generator>): this runs for every line
        if marker in text:
            break
    else:
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class _SecondText:
    """A line's time down to the second, formatted once per second rather than once per line (every
    request writes an access line; the formatting was a quarter of what one cost). One tuple
    attribute, replaced whole: formatters may be shared by threads."""

    def __init__(self, render: Callable[[int], str]) -> None:
        self._render = render
        self._kept = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        kept_second, text = self._kept
        if second != kept_second:
            text = self._render(second)
            self._kept = (second, text)
        return text


_utc_second = _SecondText(lambda second: datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S."))


def _utc_time(record: logging.LogRecord) -> str:
    return f"{_utc_second(record.created)}{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = current_request()
        if request is not None:
            entry["request_id"] = request.request_id
            if request.route is not None:
                entry["route"] = request.route
            if request.organisation_id is not None:
                entry["organisation_id"] = str(request.organisation_id)
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._local_second = _SecondText(
            lambda second: time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """As logging's default (local time, ``2026-12-02 20:30:36,123``)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return f"{self._local_second(record.created)},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request = current_request()
        if request is not None:
            line += f" [request {request.request_id}]"
        return redact(line)


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """A stream handler that writes its lines in batches (the module's docstring): one write, and one
    system call, for many access lines. A daemon thread writes what waits every ``flush_seconds``;
    a WARNING or worse writes what waits and itself at once, so the order of lines is kept."""

    MAX_BATCH = 64 * 1024  # characters

    def __init__(self, stream: TextIO, flush_seconds: float) -> None:
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._waiting: list[str] = []
        self._size = 0
        # Whether this process has a thread writing the batches (not after a fork: _after_fork), and
        # which thread it is: one that finds another number stops.
        self._writing = False
        self._writer = 0
        _BATCHING.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
                self._waiting.append(line)
                self._size += len(line)
                if record.levelno >= logging.WARNING or self._size >= self.MAX_BATCH:
                    self._write_waiting()
                elif not self._writing:
                    self._start_writer()
        except RecursionError:  # as logging.StreamHandler does
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_waiting()

    def close(self) -> None:
        self._writing, self._writer = False, self._writer + 1  # its thread stops at its next turn
        # What waits goes out, unless the stream was closed under the handler (a test runner's).
        with contextlib.suppress(ValueError, OSError):
            self.flush()
        super().close()

    def _write_waiting(self) -> None:
        if self._waiting:
            text, self._waiting, self._size = "".join(self._waiting), [], 0
            self.stream.write(text)
        if hasattr(self.stream, "flush"):
            self.stream.flush()

    def _start_writer(self) -> None:
        self._writing, self._writer = True, self._writer + 1
        writer = threading.Thread(
            target=self._write_every_interval, args=(self._writer,), name="log-writer", daemon=True
        )
        writer.start()

    def _write_every_interval(self, writer: int) -> None:
        while self._writer == writer:
            time.sleep(self.flush_seconds)
            try:
                self.flush()
            except Exception:  # a closed stream at exit: nothing left to write to
                return

    def _after_fork(self) -> None:
        # The child has no writer thread, and what waited is the parent's to write.
        self._writing, self._writer = False, self._writer + 1
        self._waiting, self._size = [], 0


_BATCHING: weakref.WeakSet[BatchedStreamHandler] = weakref.WeakSet()


def _after_fork() -> None:
    for handler in list(_BATCHING):
        handler._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork)


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Route every logger through one handler on the root logger, in the configured format.

    Called once per process by the CLI (a second call replaces the first handler). Returns the
    handler (tests remove it again)."""
    root = logging.getLogger()
    for previous in list(root.handlers):
        if getattr(previous, _HANDLER_MARK, False):
            root.removeHandler(previous)
            previous.close()  # a batching handler writes what waits and stops its thread
    target = stream or sys.stderr
    handler: logging.StreamHandler[TextIO] = (
        BatchedStreamHandler(target, settings.log_flush_seconds)
        if settings.log_flush_seconds > 0
        else logging.StreamHandler(target)
    )
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # No Streamward line names its source file, process or thread: gathering them for every record
    # (a walk of the calling frames; the process id, a system call) was about half of what an access
    # line cost (the logging HOWTO's "Optimization" lists these switches).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
