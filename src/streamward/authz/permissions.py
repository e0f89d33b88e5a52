"""The permission catalogue and the three predefined roles (DOMAIN.md's table).

The code is the source of truth: custom roles may only hold permissions listed here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PermissionInfo:
    name: str
    label: str


# Order matters for display: grouped by resource.
CATALOGUE: tuple[PermissionInfo, ...] = (
    PermissionInfo("org:read", "See the organisation"),
    PermissionInfo("org:mfa_policy", "Require a second factor for every member"),
    PermissionInfo("apikey:read", "Get the API key"),
    PermissionInfo("apikey:rotate", "Rotate the API key and playback signing keys"),
    PermissionInfo("playerkey:read", "Get the player key"),
    PermissionInfo("playerkey:rotate", "Rotate the player key"),
    PermissionInfo("token:read", "Get own bintu token"),
    PermissionInfo("webhook:read", "See the webhook config and deliveries"),
    PermissionInfo("webhook:write", "Set the custom webhook"),
    PermissionInfo("vod:read", "See VOD assets"),
    PermissionInfo("vod:settings", "Change VOD public accessibility"),
    PermissionInfo("user:read", "Get users"),
    PermissionInfo("user:invite", "Invite users"),
    PermissionInfo("user:edit", "Change users' roles"),
    PermissionInfo("user:delete", "Delete users"),
    PermissionInfo("user:token_reset", "Reset user tokens"),
    PermissionInfo("role:manage", "Manage custom roles"),
    PermissionInfo("stream:read", "Get streams"),
    PermissionInfo("stream:create", "Create streams"),
    PermissionInfo("stream:manage", "Stop, lock, unlock and delete streams"),
    PermissionInfo("tag:read", "Get tags"),
    PermissionInfo("tag:write", "Create and edit tags"),
    PermissionInfo("tag:delete", "Delete tags"),
    PermissionInfo("playback:create", "Create playback tokens"),
    PermissionInfo("playback:revoke", "Revoke playback tokens"),
    PermissionInfo("audit:read", "Read the audit log"),
)

ALL_PERMISSIONS: frozenset[str] = frozenset(p.name for p in CATALOGUE)
LABELS: dict[str, str] = {p.name: p.label for p in CATALOGUE}


def ordered(permissions: frozenset[str] | set[str]) -> list[str]:
    """Permissions in catalogue order, for stable output."""
    return [p.name for p in CATALOGUE if p.name in permissions]


AUDIENCES = ("dashboard", "bintu-api", "token-service")


def audiences_of(permissions: frozenset[str]) -> list[str]:
    """The systems a permission set reaches: any role reaches the dashboard and the bintu API;
    the token service only with ``playback:create``."""
    if not permissions:
        return []
    reached = ["dashboard", "bintu-api"]
    if "playback:create" in permissions:
        reached.append("token-service")
    return reached


@dataclass(frozen=True)
class Role:
    name: str
    title: str
    description: str
    permissions: frozenset[str]
    predefined: bool = True

    @property
    def audiences(self) -> list[str]:
        return audiences_of(self.permissions)


NANO_ADMIN = Role(
    name="nanoAdmin",
    title="Administrator",
    description="Full control of the organisation, including users, roles and the API key.",
    permissions=ALL_PERMISSIONS,
)

NANO_USER = Role(
    name="nanoUser",
    title="Operator",
    description=(
        "Runs streams day to day: creates streams, edits tags and issues playback tokens, "
        "but cannot stop, lock or delete streams or manage people."
    ),
    permissions=frozenset(
        {
            "org:read",
            "playerkey:read",
            "token:read",
            "webhook:read",
            "vod:read",
            "user:read",
            "stream:read",
            "stream:create",
            "tag:read",
            "tag:write",
            "playback:create",
        }
    ),
)

NANO_READ_ONLY = Role(
    name="nanoReadOnly",
    title="Observer",
    description=(
        "Sees configuration and state and changes nothing; sees no secrets beyond the player key "
        "and its own token."
    ),
    permissions=frozenset(
        {"org:read", "playerkey:read", "token:read", "webhook:read", "vod:read", "stream:read", "tag:read"}
    ),
)

PREDEFINED_ROLES: dict[str, Role] = {role.name: role for role in (NANO_ADMIN, NANO_USER, NANO_READ_ONLY)}
ADMIN_ROLE = NANO_ADMIN.name
