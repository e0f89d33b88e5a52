from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import pydantic_core
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from streamward.errors import BadRequest
from streamward.kept import KeptBy
from streamward.pagination import Page
from streamward.roles.lookup import role_title
from streamward.roles.schemas import RoleProfile, RoleRef
from streamward.schemas import ApiModel, ColumnText, UtcDatetime, format_utc
from streamward.users.models import Account, Membership, normalise_email
from streamward.users.service import (
    USER_CREATED_AT,
    USER_EMAIL,
    USER_ID,
    USER_ROLE,
    USER_TOKEN_KEY,
    UserView,
    checked_email,
)


def _email_rule(value: str) -> str:
    """``checked_email`` inside a request model: its refusal as the field's own validation error."""
    try:
        return checked_email(value)
    except BadRequest:
        raise PydanticCustomError("email", "not a valid email address") from None


# An email a person gives to make an account or an invitation, in a request body: normalised,
# within the column's length and free of control characters (ColumnText), then the one email rule
# (``users.service.checked_email``) that the dashboard's forms and the CLI meet in the services.
# Emails that only look an account up (login, password reset) are not checked against it: an
# account made before the rule, or under a domain no longer admitted, must still be able to sign in.
EmailAddress = Annotated[
    str,
    ColumnText(Account.email, normalise=normalise_email),
    AfterValidator(_email_rule),
    Field(json_schema_extra={"format": "email"}),
]


class MfaFlags(ApiModel):
    """Which kinds of second factor the user's account has."""

    totp: bool = Field(description="An authenticator app.")
    passkey: bool


class UserSummary(ApiModel):
    id: uuid.UUID
    email: str
    role: RoleRef
    token_key: str
    created_at: UtcDatetime
    mfa: MfaFlags

    @staticmethod
    def wire(row: Sequence[Any]) -> dict[str, Any]:
        """This model's JSON object, built straight from a users-list row (``users.service.list_users``
        with ``mfa.overview.FACTOR_KIND_COLUMNS`` as its added columns, as the database holds them):
        the list's fifty models, validated or not, and their serialisation cost more than reading the
        page. ``tests/test_perf_lists.py`` holds it to the model's own output."""
        totp, passkey = row[_TOTP], row[_PASSKEY]
        return {
            "id": str(row[USER_ID]),
            "email": row[USER_EMAIL],
            "role": {"name": row[USER_ROLE], "title": role_title(row[USER_ROLE])},
            "tokenKey": row[USER_TOKEN_KEY],
            "createdAt": format_utc(row[USER_CREATED_AT]),
            "mfa": {"totp": bool(totp), "passkey": bool(passkey)},
        }


# Where a users-list row holds the FACTOR_KIND_COLUMNS (totp, passkey): after the list's own columns.
_TOTP, _PASSKEY = USER_CREATED_AT + 1, USER_CREATED_AT + 2

# Each listed user's JSON by the row it is built from (kept.KeptBy): building fifty objects and
# serialising them was a fifth of a page's CPU.
_listed_users: KeptBy[tuple[Any, ...], bytes] = KeptBy(2048)


def _user_json(row: tuple[Any, ...]) -> bytes:
    return pydantic_core.to_json(UserSummary.wire(row))


def user_page_json(page: Page[Any]) -> bytes:
    """A users-list page (rows as ``UserSummary.wire`` reads them) as ``UserPage``'s JSON."""
    items = [_listed_users.get(tuple(row), _user_json) for row in page.items]
    return b'{"items":[%b],"nextCursor":%b}' % (b",".join(items), pydantic_core.to_json(page.next_cursor))


class UserPage(ApiModel):
    items: list[UserSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class UserDetail(ApiModel):
    id: uuid.UUID
    email: str
    role: RoleProfile
    token_key: str
    created_at: UtcDatetime

    @classmethod
    def of(cls, view: UserView) -> UserDetail:
        membership = view.membership
        return cls(
            id=membership.id,
            email=view.email,
            role=RoleProfile.of(view.role) if view.role else RoleProfile.unresolved(membership.role),
            token_key=membership.token_key,
            created_at=membership.created_at,
        )


class PermissionChange(ApiModel):
    user_id: uuid.UUID
    role: Annotated[str, ColumnText(Membership.role)] = Field(examples=["nanoUser"])


class TokenKeyReset(ApiModel):
    user_id: uuid.UUID | None = Field(default=None, description="Omitted: your own.")


class TokenKeyOut(ApiModel):
    user_id: uuid.UUID
    token_key: str
