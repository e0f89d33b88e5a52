"""Flash messages: what a POST did, said once by the page its 303 leads to (post/redirect/get)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from fastapi import Request
from fastapi.responses import Response

from streamward.crypto import SecretBox, digest
from streamward.dashboard.security import is_https, session_token
from streamward.runtime import Runtime

# Flash messages: what a POST did, said once by the page its 303 leads to (post/redirect/get), in a
# short-lived cookie. The cookie is sealed (AES-GCM under a key derived from the secret key): a
# forged or altered one does not open and is ignored, and its text cannot be read on the way, which
# matters for the one flash that carries a secret (a new invitation link, shown once). It is bound
# to the browser's session: a cookie planted from elsewhere, or left over from another sign-in, does
# not open either. Kinds map to callouts; success and info are polite status, warn and danger alerts.
FLASH_COOKIE = "sw_flash"
FLASH_SECONDS = 120  # long enough for a slow redirect, short enough that a stray one soon dies
FLASH_KINDS = {
    "success": ("notice-ok", "status"),
    "info": ("notice-info", "status"),
    "warn": ("notice-warn", "alert"),
    "danger": ("notice-danger", "alert"),
}
_FLASH_PURPOSE = "dashboard-flash"
_FLASH_MAX_COOKIE = 3500  # below the 4 KiB browsers keep per cookie


@dataclass(frozen=True)
class Flash:
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def css(self) -> str:
        return FLASH_KINDS[self.kind][0]

    @property
    def role(self) -> str:
        return FLASH_KINDS[self.kind][1]


def _flash_box(request: Request) -> SecretBox:
    runtime: Runtime = request.app.state.runtime
    return SecretBox(runtime.settings.secret_key_bytes)


def _flash_binding(session: str | None) -> str:
    return digest(session) if session else "anonymous"


def flash(
    request: Request,
    response: Response,
    kind: str,
    text: str,
    *,
    data: dict[str, Any] | None = None,
    session: str | None = None,
) -> Response:
    """Say ``text`` once on the next page this browser renders (set it on the redirect after a POST).

    ``kind``: success, info, warn or danger. ``data``: extra JSON-able values for the page that
    shows it (the invitation result). The flash is bound to the session cookie the browser holds
    now, valid or not: after one's own role change the next page is the login page, which still
    receives that (ended) cookie and so still says why the viewer has to sign in again. A response
    that signs the browser in passes the new ``session`` (the token it sets): the next page sees that.
    """
    if kind not in FLASH_KINDS:
        raise ValueError(f"unknown flash kind {kind!r}")
    session = session or session_token(request)
    payload = {
        "kind": kind,
        "text": text,
        "data": data or {},
        "until": int(time.time()) + FLASH_SECONDS,
        "for": _flash_binding(session),
    }
    sealed = _flash_box(request).seal(json.dumps(payload, ensure_ascii=False), purpose=_FLASH_PURPOSE)
    if len(sealed) > _FLASH_MAX_COOKIE:
        raise ValueError("flash message too long for a cookie")
    runtime: Runtime = request.app.state.runtime
    response.set_cookie(
        FLASH_COOKIE,
        sealed,
        max_age=FLASH_SECONDS,
        httponly=True,
        samesite="lax",
        secure=is_https(request, trust_forwarded=runtime.settings.trust_forwarded_for),
        path="/",
    )
    return response


def take_flash(request: Request) -> Flash | None:
    """The flash this request's cookie carries, if it opens, is this session's and has not expired."""
    sealed = request.cookies.get(FLASH_COOKIE)
    if not sealed or len(sealed) > _FLASH_MAX_COOKIE:
        return None
    try:
        payload = json.loads(_flash_box(request).open(sealed, purpose=_FLASH_PURPOSE))
    except (InvalidTag, ValueError):  # forged, altered, truncated or sealed under another key: ignored
        return None
    if (
        not isinstance(payload, dict)
        or payload.get("for") != _flash_binding(session_token(request))
        or not isinstance(payload.get("until"), int)
        or payload["until"] < time.time()
        or payload.get("kind") not in FLASH_KINDS
        or not isinstance(payload.get("text"), str)
        or not isinstance(payload.get("data"), dict)
    ):
        return None
    return Flash(payload["kind"], payload["text"], payload["data"])
