"""The second step of a dashboard sign-in, remembered between its pages.

When the password is right and the account has a second factor, the login service answers
MfaRequired with a challenge (bound to the account, the chosen membership and this client, five
minutes, used up by five wrong answers) and what the account can answer with. The browser keeps
that in one cookie: HttpOnly (no script reads the challenge), SameSite=Lax, Secure over HTTPS like
the session cookie, sent only to ``/login`` paths, and sealed (AES-GCM under the secret key, as the
flash is) so that what ``/login/mfa`` shows — the factors, the passkey request options — is what
the service said, not what someone planted. The challenge itself stays the service's to judge.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from fastapi import Request
from fastapi.responses import Response

from streamward.authn.service import LoginResult
from streamward.crypto import SecretBox
from streamward.dashboard.core import SECURITY_PAGE, redirect
from streamward.dashboard.security import is_https, set_session_cookie
from streamward.runtime import Runtime

LOGIN_STEP_COOKIE = "sw_login_step"
LOGIN_STEP_PATH = "/login"
_PURPOSE = "dashboard-login-step"
_MAX_COOKIE = 3800  # browsers keep 4 KiB per cookie, name and attributes included


@dataclass(frozen=True)
class LoginStep:
    challenge: str
    expires_at: float  # epoch seconds
    factors: list[str]
    email: str
    next_url: str
    # PublicKeyCredentialRequestOptions (JSON) when the account has passkeys.
    public_key: dict[str, Any] | None = field(default=None)


def _box(request: Request) -> SecretBox:
    runtime: Runtime = request.app.state.runtime
    return SecretBox(runtime.settings.secret_key_bytes)


def _sealed(request: Request, step: LoginStep) -> str:
    payload = {
        "challenge": step.challenge,
        "until": step.expires_at,
        "factors": step.factors,
        "email": step.email,
        "next": step.next_url,
        "publicKey": step.public_key,
    }
    return _box(request).seal(json.dumps(payload, ensure_ascii=False), purpose=_PURPOSE)


def step_from_details(details: dict[str, Any], *, email: str, next_url: str) -> LoginStep:
    """The step MfaRequired's details describe (the JSON API's ``details``)."""
    expires = details.get("expiresAt")
    try:
        until = datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp()
    except ValueError:
        until = time.time() + 300
    public_key = details.get("publicKey")
    return LoginStep(
        challenge=str(details["challenge"]),
        expires_at=until,
        factors=[str(kind) for kind in details.get("factors", [])],
        email=email,
        next_url=next_url,
        public_key=public_key if isinstance(public_key, dict) else None,
    )


def remember_step(request: Request, response: Response, step: LoginStep) -> Response:
    sealed = _sealed(request, step)
    if len(sealed) > _MAX_COOKIE and step.public_key is not None:
        # Many passkeys: ask for any discoverable credential of this site instead of listing them
        # (every passkey is registered discoverable; the service still checks it is the account's).
        lighter = step.public_key | {"allowCredentials": []}
        sealed = _sealed(request, LoginStep(**{**step.__dict__, "public_key": lighter}))
    if len(sealed) > _MAX_COOKIE:
        raise ValueError("the login step does not fit into a cookie")
    response.set_cookie(
        LOGIN_STEP_COOKIE,
        sealed,
        max_age=max(1, int(step.expires_at - time.time())),
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        path=LOGIN_STEP_PATH,
    )
    return response


def current_step(request: Request) -> LoginStep | None:
    """The step this browser is in, if its cookie opens and has not expired."""
    sealed = request.cookies.get(LOGIN_STEP_COOKIE)
    if not sealed or len(sealed) > _MAX_COOKIE:
        return None
    try:
        payload = json.loads(_box(request).open(sealed, purpose=_PURPOSE))
    except (InvalidTag, ValueError):
        return None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("challenge"), str)
        or not isinstance(payload.get("until"), int | float)
        or payload["until"] < time.time()
        or not isinstance(payload.get("factors"), list)
    ):
        return None
    public_key = payload.get("publicKey")
    return LoginStep(
        challenge=payload["challenge"],
        expires_at=float(payload["until"]),
        factors=[str(kind) for kind in payload["factors"]],
        email=str(payload.get("email") or ""),
        next_url=str(payload.get("next") or ""),
        public_key=public_key if isinstance(public_key, dict) else None,
    )


def forget_step(request: Request, response: Response) -> Response:
    response.delete_cookie(
        LOGIN_STEP_COOKIE, path=LOGIN_STEP_PATH, httponly=True, samesite="lax", secure=is_https(request)
    )
    return response


def safe_next(value: str | None) -> str:
    """Only same-site paths: an open redirect after login would hand phishers a trusted link."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/organisation/overview"


def sign_in_response(request: Request, result: LoginResult, next_url: str) -> Response:
    """The end of every dashboard sign-in (password, second step, passkey alone): the session cookie
    set, the login step forgotten, and the 303 to ``next_url`` — or to the security page when the
    organisation limits the new session to enrolment (the credential look-up says so, as it will on
    every request of that session)."""
    response = redirect(SECURITY_PAGE if result.enrolment_only else next_url)
    runtime: Runtime = request.app.state.runtime
    set_session_cookie(
        response,
        result.issued.token,
        max_age=runtime.settings.session_lifetime_seconds,
        secure=is_https(request),
    )
    if LOGIN_STEP_COOKIE in request.cookies:
        forget_step(request, response)
    return response
