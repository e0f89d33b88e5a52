from __future__ import annotations

from typing import Annotated

from pydantic import Field

from streamward.authz.permissions import Role, ordered
from streamward.roles.models import CustomRole
from streamward.schemas import ApiModel, ColumnText, column_length


class RoleRef(ApiModel):
    name: str
    title: str


class RoleProfile(ApiModel):
    """A role as the permission overview shows it."""

    name: str
    title: str
    description: str
    predefined: bool
    audiences: list[str]
    permissions: list[str] = Field(description="Permission names, in catalogue order.")

    @classmethod
    def of(cls, role: Role) -> RoleProfile:
        return cls(
            name=role.name,
            title=role.title,
            description=role.description,
            predefined=role.predefined,
            audiences=role.audiences,
            permissions=ordered(role.permissions),
        )

    @classmethod
    def unresolved(cls, name: str) -> RoleProfile:
        """A role name that no longer resolves (it grants nothing)."""
        return cls(name=name, title=name, description="", predefined=False, audiences=[], permissions=[])


class RoleOut(RoleProfile):
    member_count: int


class PermissionInfoOut(ApiModel):
    name: str
    label: str


class RoleList(ApiModel):
    items: list[RoleOut]
    catalogue: list[PermissionInfoOut] = Field(description="Every permission a custom role may hold.")


# Letters first; then letters, digits, "_", "-", "." (role names appear in URLs and filters); as
# long as the column allows.
ROLE_NAME_PATTERN = rf"^[A-Za-z][A-Za-z0-9_.-]{{0,{column_length(CustomRole.name) - 1}}}$"
# A description may run over several lines (TAB, LF and CR kept).
Description = Annotated[str, ColumnText(CustomRole.description, multiline=True, min_length=0)]


class RoleCreate(ApiModel):
    name: str = Field(pattern=ROLE_NAME_PATTERN, examples=["streamOperator"])
    description: Description = ""
    permissions: list[str] = Field(max_length=100, examples=[["stream:read", "stream:create"]])


class RoleUpdate(ApiModel):
    """Fields left out stay as they are."""

    description: Description | None = None
    permissions: list[str] | None = Field(default=None, max_length=100)
