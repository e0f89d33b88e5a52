"""What every dashboard page shares: the viewer, rendering, CSRF-checked forms, error pages.

Pages call the same services as the JSON API, so every rule lives once; what a viewer may not do is
not rendered, and the service refuses it anyway.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from cryptography.exceptions import InvalidTag
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from streamward.authz.permissions import LABELS, PREDEFINED_ROLES, Role, ordered
from streamward.authz.principal import Principal
from streamward.crypto import SecretBox, digest
from streamward.dashboard.security import (
    CSRF_FIELD,
    check_csrf,
    csrf_token,
    is_https,
    remember_anonymous_csrf,
    session_token,
)
from streamward.errors import AppError
from streamward.orgs.models import Organisation, organisation_of
from streamward.roles.lookup import resolve_role
from streamward.runtime import Runtime
from streamward.web.access import access_rule, permission_rule
from streamward.web.authenticate import principal_for
from streamward.web.params import RuntimeDep
from streamward.web.session import DbSession

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"
# Autoescape for every template whatever its file name (Starlette's default only escapes names
# ending in .html/.htm/.xml): a value is HTML-escaped unless it is Markup, and the only Markup that
# carries data is `json_script`'s. tests/test_markup_lint.py refuses any other way to mark text safe.
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True)
)

# Inside a <script> element the HTML parser ends the element at the first "</script" whatever the
# quotes around it, and "<!--" changes how it looks for that end: a value written there raw can close
# the element and inject markup (forms that swallow the page's CSRF tokens; CSP stops scripts, not
# markup). JSON's \u escapes say the same characters without "<", ">" or "&", and JSON.parse reads them
# back unchanged; U+2028/U+2029 are escaped too so the text stays valid if ever read as JavaScript.
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(value: Any) -> str:
    """``value`` as JSON text that cannot end or alter the <script> element it is written into."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True).translate(_SCRIPT_ESCAPES)


def json_script(value: Any, element_id: str) -> Markup:
    """``{{ value|json_script("some-id") }}``: the whole ``<script type="application/json">`` element,
    for app.js to read with ``JSON.parse(element.textContent)``. The one way data enters a script."""
    element = f'<script type="application/json" id="{escape(element_id)}">{script_json(value)}</script>'
    return Markup(element)  # noqa: S704 - the id is escaped; script_json leaves no "<", ">" or "&"


def json_text(value: Any) -> str:
    """JSON for people to read (the audit log's before/after): plain text, HTML-escaped like any value."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.iterdir()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


_STATIC_VERSION = _static_version()
templates.env.globals["static"] = lambda name: f"/static/{name}?v={_STATIC_VERSION}"
templates.env.filters["utc"] = lambda value: (
    value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""
)
templates.env.filters["label"] = lambda permission: LABELS.get(permission, permission)
templates.env.filters["json_script"] = json_script
templates.env.filters["role_label"] = lambda role, title=None: (
    role_label(role, title) if isinstance(role, str) else role_label(role.name, role.title)
)
templates.env.filters["json_text"] = json_text
# Jinja's own `tojson` returns Markup that leaves '"' raw: in a double-quoted attribute it breaks out.
# Data goes into scripts through `json_script` and into text through `json_text`, nothing else.
del templates.env.filters["tojson"]


class LoginRequired(AppError):
    status_code = 401
    code = "login_required"
    message = "Please sign in."


@dataclass(frozen=True)
class Viewer:
    principal: Principal
    token: str
    role: Role | None

    def can(self, permission: str) -> bool:
        return self.principal.can(permission)

    @property
    def email(self) -> str | None:
        return self.principal.email

    @property
    def role_title(self) -> str:
        return self.role.title if self.role else (self.principal.role or "")

    @property
    def initials(self) -> str:
        return (self.email or "?")[:1].upper()

    @property
    def organisation(self) -> Organisation:
        return organisation_of(self.principal)


async def _viewer(request: Request, db: DbSession, runtime: RuntimeDep) -> Viewer:
    token = session_token(request)
    principal = await principal_for(request, db, runtime, token=token) if token else None
    if principal is None:
        raise LoginRequired()
    role = await resolve_role(db, principal.organisation_id, principal.role or "")
    request.state.viewer = Viewer(principal, token or "", role)
    return request.state.viewer  # type: ignore[no-any-return]


def page(permission: str | None = None) -> Any:
    """Dependency of a dashboard page: a signed-in viewer (holding ``permission`` when given)."""
    return permission_rule(
        f"dashboard:{permission or 'signed-in'}", permission, _viewer, lambda viewer: viewer.principal
    )


@access_rule("dashboard-public")
async def _public_page() -> None:
    """Sign-in pages: login, invitation, password reset."""


PUBLIC_PAGE = Depends(_public_page)


async def checked_form(request: Request, runtime: RuntimeDep) -> dict[str, str]:
    """The submitted form, after its CSRF token was checked. State changes only ever come by POST."""
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    check_csrf(request, runtime.settings.secret_key_bytes, fields.get(CSRF_FIELD))
    return fields


CheckedForm = Annotated[dict[str, str], Depends(checked_form)]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    context.setdefault("viewer", viewer)
    context.setdefault("title", "Streamward")
    if viewer is not None:
        context.setdefault("org", viewer.organisation)
    context["csrf"] = csrf_token(request, runtime.settings.secret_key_bytes)
    # A flash is said once: the page that shows it (or finds it stale or forged) clears the cookie.
    if "flash" not in context:
        context["flash"] = take_flash(request)
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="lax")
    remember_anonymous_csrf(
        request, response, secure=is_https(request, trust_forwarded=runtime.settings.trust_forwarded_for)
    )
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def role_label(name: str, title: str | None = None) -> str:
    """The one way a role is named on a page: title first, name second ("Administrator (nanoAdmin)");
    a role whose title is its name (custom roles) by its name alone. As a filter:
    ``{{ role|role_label }}`` for a Role, ``{{ name|role_label(title) }}`` for a name and a title."""
    return f"{title} ({name})" if title and title != name else name


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


def flash_redirect(
    request: Request, url: str, kind: str, text: str, *, data: dict[str, Any] | None = None
) -> Response:
    """The usual end of a dashboard POST: 303 to a GET page that says ``text`` once."""
    return flash(request, redirect(url), kind, text, data=data)


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


def role_catalogue(roles: list[Role]) -> dict[str, dict[str, Any]]:
    """The roles for the role-select preview; templates write it with ``json_script``."""
    return {
        role.name: {
            "title": role.title,
            "description": role.description,
            "audiences": role.audiences,
            "permissions": [LABELS[p] for p in ordered(role.permissions)],
        }
        for role in roles
    }


def predefined_roles() -> list[Role]:
    return list(PREDEFINED_ROLES.values())


_ERROR_HEADINGS = {
    400: "That did not work",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "That did not work",
    413: "Too large",
    422: "Please check your input",
    429: "Slow down",
    500: "Something went wrong",
}


async def render_error(request: Request, status: int, code: str, message: str, exc: Exception) -> Response:
    """Errors on dashboard pages are pages, not JSON."""
    if isinstance(exc, LoginRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/login?next={quote(target, safe='')}")
    if status == 500:
        message = "Something went wrong on our side. Please try again."
    return render(
        request,
        "error.html",
        status_code=status,
        title=_ERROR_HEADINGS.get(status, "Error"),
        heading=_ERROR_HEADINGS.get(status, "Error"),
        message=message,
        status=status,
        code=code,
        back_url="/organisation" if getattr(request.state, "viewer", None) else "/login",
        back_label="Back to the organisation" if getattr(request.state, "viewer", None) else "Sign in",
    )
