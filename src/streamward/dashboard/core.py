"""What every dashboard page shares: the viewer, rendering, CSRF-checked forms, error pages.

Pages call the same services as the JSON API, so every rule lives once; what a viewer may not do is
not rendered, and the service refuses it anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from streamward.authn.mfa.errors import EnrolmentRequired
from streamward.authz.permissions import LABELS, PREDEFINED_ROLES, Role, ordered
from streamward.authz.principal import Principal
from streamward.dashboard.flash import FLASH_COOKIE, Flash, flash, take_flash
from streamward.dashboard.security import (
    CSRF_FIELD,
    check_csrf,
    csrf_token,
    is_https,
    remember_anonymous_csrf,
    session_token,
)
from streamward.dashboard.templating import role_label, templates
from streamward.errors import AppError
from streamward.orgs.models import Organisation, organisation_of
from streamward.roles.lookup import resolve_role, role_title
from streamward.runtime import Runtime
from streamward.web.access import access_rule, permission_rule
from streamward.web.authenticate import principal_for
from streamward.web.params import RuntimeDep
from streamward.web.session import DbSession


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
        return role_title(self.principal.role or "")

    @property
    def initials(self) -> str:
        return (self.email or "?")[:1].upper()

    @property
    def organisation(self) -> Organisation:
        return organisation_of(self.principal)

    @property
    def enrolment_only(self) -> bool:
        """The organisation requires a second factor the viewer has not set up: the session reaches
        the security pages and logout only (``page(enrolment=True)``)."""
        return self.principal.enrolment_only


# Where a viewer limited to enrolment is sent, and the one thing its pages offer.
SECURITY_PAGE = "/account/security"


async def _any_viewer(request: Request, db: DbSession, runtime: RuntimeDep) -> Viewer:
    """Whoever the session cookie signs in, a session limited to enrolment included."""
    token = session_token(request)
    principal = await principal_for(request, db, runtime, token=token) if token else None
    if principal is None:
        raise LoginRequired()
    role = await resolve_role(db, principal.organisation_id, principal.role or "")
    request.state.viewer = Viewer(principal, token or "", role)
    return request.state.viewer  # type: ignore[no-any-return]


async def _viewer(viewer: Annotated[Viewer, Depends(_any_viewer)]) -> Viewer:
    """A signed-in viewer with a full session: one limited to enrolment gets the 403 page saying
    mfa_enrolment_required (as web.authenticate refuses it on the API), with the way to the
    security page."""
    if viewer.enrolment_only:
        raise EnrolmentRequired()
    return viewer


def page(permission: str | None = None, *, enrolment: bool = False) -> Any:
    """Dependency of a dashboard page: a signed-in viewer (holding ``permission`` when given).

    ``enrolment=True``: a viewer whose session is limited to enrolment is accepted too (the security
    pages and logout; web.access's ENROLMENT for the API). Such pages take no permission: they act
    on the viewer's own account only."""
    if enrolment:
        if permission is not None:
            raise ValueError("an enrolment page acts on the viewer's own account: no permission")
        return permission_rule("dashboard:enrolment", None, _any_viewer, lambda viewer: viewer.principal)
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


def flash_redirect(
    request: Request, url: str, kind: str, text: str, *, data: dict[str, Any] | None = None
) -> Response:
    """The usual end of a dashboard POST: 303 to a GET page that says ``text`` once."""
    return flash(request, redirect(url), kind, text, data=data)


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
    signed_in = getattr(request.state, "viewer", None) is not None
    back_url, back_label = (
        ("/organisation", "Back to the organisation") if signed_in else ("/login", "Sign in")
    )
    if isinstance(exc, EnrolmentRequired):
        back_url, back_label = SECURITY_PAGE, "Set up a second factor"
    return render(
        request,
        "error.html",
        status_code=status,
        title=_ERROR_HEADINGS.get(status, "Error"),
        heading=_ERROR_HEADINGS.get(status, "Error"),
        message=message,
        status=status,
        code=code,
        back_url=back_url,
        back_label=back_label,
    )


# What pages take from here: the viewer and access, forms, rendering, and (re-exported) the flash
# and role-naming helpers they use with them.
__all__ = [
    "PUBLIC_PAGE",
    "SECURITY_PAGE",
    "CheckedForm",
    "Flash",
    "LoginRequired",
    "Viewer",
    "flash",
    "flash_redirect",
    "page",
    "predefined_roles",
    "redirect",
    "render",
    "render_error",
    "role_catalogue",
    "role_label",
    "take_flash",
]
