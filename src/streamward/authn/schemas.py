from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field

from streamward.authn.models import BintuSession
from streamward.roles.schemas import RoleRef
from streamward.schemas import ApiModel, ColumnText, UtcDatetime
from streamward.users.models import Account, normalise_email

# An email as the account table holds it: normalised first, then no longer than the column.
AccountEmail = Annotated[str, ColumnText(Account.email, normalise=normalise_email)]


class LoginRequest(ApiModel):
    email: AccountEmail
    # 128 is the password policy's ceiling; anything longer cannot be a valid password.
    password: str = Field(min_length=1, max_length=128)
    organisation: uuid.UUID | None = Field(default=None, description="Needed when the account has several.")


class OrganisationRef(ApiModel):
    id: uuid.UUID
    name: str


class UserRef(ApiModel):
    id: uuid.UUID
    email: str


class LoginResponse(ApiModel):
    token: str
    expires_at: UtcDatetime
    organisation: OrganisationRef
    role: RoleRef
    user: UserRef
    api_key: str | None = Field(default=None, description="Only for roles holding apikey:read.")


# New passwords may be longer than the policy allows, so that the policy, not the schema, answers.
_NEW_PASSWORD = Field(min_length=1, max_length=1024)


class PasswordChange(ApiModel):
    current_password: str = Field(min_length=1, max_length=128)
    new_password: str = _NEW_PASSWORD


class PasswordResetRequest(ApiModel):
    email: AccountEmail


class PasswordResetRequested(ApiModel):
    message: str = (
        "If this email belongs to an account, a reset link is on its way; it works once, for one hour."
    )


class PasswordResetComplete(ApiModel):
    password: str = _NEW_PASSWORD


class BintuTokenCreate(ApiModel):
    name: Annotated[str, ColumnText(BintuSession.name)] = Field(
        description="What the token is for, e.g. 'CI'."
    )
    expires_in_days: int = Field(ge=1, le=365)


class BintuTokenOut(ApiModel):
    token: str = Field(description="Shown once.")
    name: str
    expires_at: UtcDatetime
