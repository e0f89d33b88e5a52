"""The token service's refusals: documented numeric codes, each with a stable ``reason`` string
(DOMAIN.md "Playback tokens"); the routes render them in the service's own envelope."""

from __future__ import annotations

from typing import Any

from streamward.errors import AppError

# Documented error codes of the token service.
PARAMETER_MISSING = 1000
INVALID_CREDENTIALS = 1001
TOKEN_EXPIRED = 1002
MALFORMED_TOKEN = 2004
NOT_REVOCABLE = 2011
OTHER_ORGANISATION = 2012


class SplayError(AppError):
    """A token-service error: a documented numeric code, plus a stable ``reason`` string."""

    def __init__(
        self,
        number: int,
        reason: str,
        message: str,
        *,
        status_code: int,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=reason, details=details)
        self.number = number
        self.status_code = status_code


def bad_parameter(message: str, **details: Any) -> SplayError:
    return SplayError(
        PARAMETER_MISSING, "invalid_parameter", message, status_code=400, details=details or None
    )


def malformed(reason: str, message: str) -> SplayError:
    return SplayError(MALFORMED_TOKEN, reason, message, status_code=400)


def refused(reason: str, message: str) -> SplayError:
    return SplayError(INVALID_CREDENTIALS, reason, message, status_code=403)
