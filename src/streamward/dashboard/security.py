"""Dashboard sessions and CSRF.

The session cookie carries the viewer's bintu token itself (HttpOnly, SameSite=Lax, Secure over
HTTPS), so everything that ends a bintu token — logout, token reset, role change, deletion — ends the
dashboard session too, on the very next request.

CSRF: every state-changing form carries a token. Signed in, it is an HMAC of the session token's
digest under the secret key (nothing stored); before sign-in (login, invitation, password reset
forms) it is a random value also kept in an HttpOnly ``SameSite=Strict`` cookie (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

from streamward.crypto import digest
from streamward.errors import AppError

SESSION_COOKIE = "sw_session"
CSRF_COOKIE = "sw_csrf"
CSRF_FIELD = "csrf_token"


class CsrfRefused(AppError):
    status_code = 403
    code = "csrf_refused"
    message = "This form has expired or did not come from this site. Reload the page and try again."


def is_https(request: Request, *, trust_forwarded: bool) -> bool:
    if trust_forwarded and request.headers.get("x-forwarded-proto", "").lower() == "https":
        return True
    return request.url.scheme == "https"


def session_token(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return token if token and len(token) <= 256 else None


def set_session_cookie(response: Response, token: str, *, max_age: int, secure: bool) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def _signed(secret_key: bytes, token: str) -> str:
    return hmac.new(secret_key, b"csrf:" + digest(token).encode(), hashlib.sha256).hexdigest()


def csrf_token(request: Request, secret_key: bytes) -> str:
    """The token to put into this page's forms (also remembered for the response's cookie)."""
    token = session_token(request)
    if token:
        return _signed(secret_key, token)
    anonymous = request.cookies.get(CSRF_COOKIE)
    if not anonymous or len(anonymous) > 64:
        anonymous = getattr(request.state, "new_csrf_cookie", None) or secrets.token_urlsafe(32)
        request.state.new_csrf_cookie = anonymous
    return anonymous


def remember_anonymous_csrf(request: Request, response: Response, *, secure: bool) -> None:
    fresh = getattr(request.state, "new_csrf_cookie", None)
    if fresh:
        response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="strict", secure=secure, path="/")


def check_csrf(request: Request, secret_key: bytes, submitted: str | None) -> None:
    if not submitted:
        raise CsrfRefused()
    token = session_token(request)
    candidates = []
    if token:
        candidates.append(_signed(secret_key, token))
    anonymous = request.cookies.get(CSRF_COOKIE)
    if anonymous:
        candidates.append(anonymous)
    if not any(hmac.compare_digest(submitted.encode(), c.encode()) for c in candidates):
        raise CsrfRefused()
