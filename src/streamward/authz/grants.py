"""The permission check and the no-escalation rule: what a Principal may do, and what it may hand out.

The refusal messages live here, once: every surface (JSON API, token service, dashboard) refuses
through ``check``, and every service that grants (invitations, role changes, role edits) through
``ensure_can_grant``.
"""

from __future__ import annotations

from streamward.authz.permissions import LABELS, Role, ordered
from streamward.authz.principal import Principal
from streamward.errors import Forbidden


class Escalation(Forbidden):
    """Granting (or acting on) a role that holds permissions the caller lacks."""

    code = "escalation"
    message = "That role holds permissions you do not have."


def refusal(permission: str) -> Forbidden:
    """The 403 of a caller lacking ``permission``."""
    return Forbidden(
        f"Your role does not allow this ({LABELS[permission]}).",
        code="forbidden",
        details={"permission": permission},
    )


def check(principal: Principal, permission: str) -> Principal:
    """``principal``, provided it holds ``permission``; else the refusal."""
    if permission not in principal.permissions:
        raise refusal(permission)
    return principal


def ensure_can_grant(principal: Principal, permissions: frozenset[str], *, what: str) -> None:
    """No escalation: nobody hands out (by invite, role change or role edit) a permission they lack.

    The API key holds every permission, so it passes.
    """
    missing = permissions - principal.permissions
    if missing:
        raise Escalation(f"{what} holds permissions you do not have.", details={"missing": ordered(missing)})


def ensure_can_act_on(principal: Principal, target_role: Role | None) -> None:
    """Nobody changes or deletes a member whose role holds permissions they lack: a role with
    ``user:edit`` alone must not be able to demote or remove the organisation's administrators."""
    if target_role is not None:
        ensure_can_grant(principal, target_role.permissions, what=f"This user's role ({target_role.name})")
