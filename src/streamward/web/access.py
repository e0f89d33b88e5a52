"""How a route declares who may call it. Every route carries exactly one access rule:
``require("perm")`` for members and API keys, ``PUBLIC`` for routes anyone may call, or another
rule defined next to the feature that needs it (operator token, ingest secret). The route-table
test fails on a route without one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends

from streamward.authz.permissions import ALL_PERMISSIONS, LABELS
from streamward.authz.principal import Principal
from streamward.errors import Forbidden
from streamward.web.authenticate import authenticate

ACCESS_RULE_ATTRIBUTE = "streamward_access_rule"


def access_rule(rule: str) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Mark a dependency as the access rule of the routes that use it."""

    def mark(dependency: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        setattr(dependency, ACCESS_RULE_ATTRIBUTE, rule)
        return dependency

    return mark


_requirements: dict[str, Any] = {}


def require(permission: str) -> Any:
    """Dependency: the caller is authenticated and holds ``permission``; yields the Principal."""
    if permission not in ALL_PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    if permission not in _requirements:

        @access_rule(f"permission:{permission}")
        async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
            if permission not in principal.permissions:
                raise Forbidden(
                    f"Your role does not allow this ({LABELS[permission]}).",
                    code="forbidden",
                    details={"permission": permission},
                )
            return principal

        dependency.__name__ = f"require_{permission.replace(':', '_')}"
        _requirements[permission] = Depends(dependency)
    return _requirements[permission]


@access_rule("public")
async def _public() -> None:
    """Anyone may call the route (login, invitation look-up, public VOD, JWKS...)."""


PUBLIC = Depends(_public)


@access_rule("authenticated")
async def _authenticated(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    return principal


# Any member or API key, whatever its permissions (logout, own profile).
AUTHENTICATED = Depends(_authenticated)
