"""How a route declares who may call it. Every route carries exactly one access rule:
``require("perm")`` for members and API keys, ``PUBLIC`` for routes anyone may call, the
dashboard's ``page(...)``, or another rule defined next to the surface that needs it (operator
token, ingest secret, player reads). The route-table test fails on a route without one.

``permission_rule`` is the one factory of permission checks: the JSON API, the token service and
the dashboard build theirs with it, and the refusal is ``authz.grants.check``'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Depends, Request

from streamward.authz.grants import check
from streamward.authz.permissions import ALL_PERMISSIONS
from streamward.authz.principal import Principal
from streamward.web.authenticate import REQUEST_ONLY_ATTRIBUTE, authenticate, authenticate_for_enrolment

ACCESS_RULE_ATTRIBUTE = "streamward_access_rule"
# Set on rules that look the credential up without a DbSession dependency: they open the request's
# session (on SQLite, or for a writing route), so the route-table test holds their routes to a
# declared session mode.
SESSION_USER_ATTRIBUTE = "streamward_session_user"


def access_rule(rule: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Mark a dependency as the access rule of the routes that use it."""

    def mark(dependency: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        setattr(dependency, ACCESS_RULE_ATTRIBUTE, rule)
        return dependency

    return mark


_rules: dict[tuple[str, str | None, Any], Any] = {}


def permission_rule(
    label: str,
    permission: str | None,
    source: Callable[..., Awaitable[Any]],
    principal_of: Callable[[Any], Principal] = lambda subject: subject,
) -> Any:
    """Dependency: whoever ``source`` finds (a Principal, or a dashboard viewer that carries one),
    provided it holds ``permission`` (any signed-in caller when None). Built once per combination,
    so FastAPI sees the same dependency object on every route that asks for the same thing."""
    if permission is not None and permission not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    key = (label, permission, source)
    if key not in _rules:
        if getattr(source, REQUEST_ONLY_ATTRIBUTE, False):
            # The source finds the caller from the request alone: called here, not resolved by
            # FastAPI as a dependency of its own (one resolution less on every request).
            @access_rule(label)
            async def dependency(request: Request) -> Any:
                subject = await source(request)
                if permission is not None:
                    check(principal_of(subject), permission)
                return subject

            setattr(dependency, SESSION_USER_ATTRIBUTE, True)
        else:

            @access_rule(label)
            async def dependency(subject: Any = Depends(source)) -> Any:
                if permission is not None:
                    check(principal_of(subject), permission)
                return subject

        dependency.__name__ = "require_" + (permission or "signed_in").replace(":", "_")
        _rules[key] = Depends(dependency)
    return _rules[key]


def require(permission: str) -> Any:
    """Dependency of a JSON API route: the caller is authenticated and holds ``permission``;
    yields the Principal."""
    return permission_rule(f"permission:{permission}", permission, authenticate)


def token_service(permission: str) -> Any:
    """Access rule of the token service (``/api/v1/splay``): like ``require``; its routes turn the
    refusal into the service's own envelope."""
    return permission_rule("token-service", permission, authenticate)


@access_rule("public")
async def _public() -> None:
    """Anyone may call the route (login, invitation look-up, public VOD, JWKS...)."""


PUBLIC = Depends(_public)


@access_rule("authenticated")
async def _authenticated(request: Request) -> Principal:
    return await authenticate(request)


setattr(_authenticated, SESSION_USER_ATTRIBUTE, True)

# Any member or API key, whatever its permissions (logout, own profile).
AUTHENTICATED = Depends(_authenticated)


@access_rule("enrolment")
async def _enrolment(request: Request) -> Principal:
    return await authenticate_for_enrolment(request)


setattr(_enrolment, SESSION_USER_ATTRIBUTE, True)


# Any member or API key, including a member whose organisation requires a second factor they have
# not set up yet: the routes such a session may reach (setting up a factor, logout). Nothing else.
ENROLMENT = Depends(_enrolment)
