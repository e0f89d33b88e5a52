"""Dashboard sessions and CSRF.

The session cookie carries the viewer's bintu token itself (HttpOnly, SameSite=Lax, Secure over
HTTPS), so everything that ends a bintu token — logout, token reset, role change, deletion — ends the
dashboard session too, on the very next request.

CSRF: every state-changing form carries a token. Signed in, it is an HMAC of the session token's
digest under the secret key (nothing stored), and nothing else is accepted; before sign-in (login,
invitation, password reset forms) it is a random value also kept in an HttpOnly ``SameSite=Strict``
cookie (double submit). That cookie proves only that the form and the cookie came together: anybody
who can plant a cookie (a sibling subdomain, a plain-HTTP answer) chooses its value. So it never
counts for a signed-in form, and every sign-in drops it (the next anonymous form gets a fresh one).
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


def is_https(request: Request, *, trust_forwarded: bool | None = None) -> bool:
    """Whether the browser reached us over HTTPS, as ForwardedClient decided it (the connection's
    scheme, or what a trusted proxy forwarded). ``trust_forwarded`` is ignored: kept only so that
    older callers keep working; the setting is honoured in the middleware, once."""
    return request.url.scheme == "https"


def session_token(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return token if token and len(token) <= 256 else None


def set_session_cookie(response: Response, token: str, *, max_age: int, secure: bool) -> None:
    """Sign the browser in; its anonymous CSRF token ends with that (see the module's docstring)."""
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
    )
    clear_anonymous_csrf(response, secure=secure)


def clear_session_cookie(response: Response) -> None:
    """Sign the browser out; the next anonymous form gets a fresh anonymous CSRF token."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


def _signed(secret_key: bytes, token: str) -> str:
    return hmac.new(secret_key, b"csrf:" + digest(token).encode(), hashlib.sha256).hexdigest()


def _anonymous_cookie(request: Request) -> str | None:
    value = request.cookies.get(CSRF_COOKIE)
    return value if value and len(value) <= 64 else None


def csrf_token(request: Request, secret_key: bytes) -> str:
    """The token to put into this page's forms (also remembered for the response's cookie)."""
    token = session_token(request)
    if token:
        return _signed(secret_key, token)
    anonymous = _anonymous_cookie(request)
    if not anonymous:
        anonymous = getattr(request.state, "new_csrf_cookie", None) or secrets.token_urlsafe(32)
        request.state.new_csrf_cookie = anonymous
    return anonymous


def remember_anonymous_csrf(request: Request, response: Response, *, secure: bool) -> None:
    fresh = getattr(request.state, "new_csrf_cookie", None)
    if fresh:
        response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="strict", secure=secure, path="/")


def clear_anonymous_csrf(response: Response, *, secure: bool) -> None:
    response.delete_cookie(CSRF_COOKIE, httponly=True, samesite="strict", secure=secure, path="/")


def check_csrf(request: Request, secret_key: bytes, submitted: str | None) -> None:
    """The form's token must be the one ``csrf_token`` gives this request: the session-bound one
    whenever a session cookie is present, the anonymous cookie's value only when none is."""
    if not submitted:
        raise CsrfRefused()
    token = session_token(request)
    expected = _signed(secret_key, token) if token else _anonymous_cookie(request)
    if not expected or not hmac.compare_digest(submitted.encode(), expected.encode()):
        raise CsrfRefused()
