from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field

from streamward.invites.models import Invitation
from streamward.invites.service import DEFAULT_LIFETIME_DAYS, MAX_LIFETIME_DAYS, MIN_LIFETIME_DAYS
from streamward.roles.schemas import RoleRef
from streamward.schemas import ApiModel, ColumnText, UtcDatetime
from streamward.users.schemas import EmailAddress

InviteStatus = Literal["pending", "accepted", "expired", "revoked"]

# The service's range, declared here too so that the API refuses out-of-range values as it refuses
# any invalid field (422 ``validation_error``, before anything is looked up) and documents the range.
ExpiresInDays = Field(
    default=DEFAULT_LIFETIME_DAYS,
    ge=MIN_LIFETIME_DAYS,
    le=MAX_LIFETIME_DAYS,
    description=f"Days until the link stops working ({MIN_LIFETIME_DAYS} to {MAX_LIFETIME_DAYS}).",
)


class InviteCreate(ApiModel):
    role: Annotated[str, ColumnText(Invitation.role)] = Field(examples=["nanoUser"])
    email: EmailAddress | None = Field(default=None, description="Only this address may accept.")
    expires_in_days: int = ExpiresInDays


class InviteRenew(ApiModel):
    expires_in_days: int = ExpiresInDays


class InviteOut(ApiModel):
    id: uuid.UUID
    role: RoleRef
    email: str | None
    status: InviteStatus
    created_by: str
    created_at: UtcDatetime
    expires_at: UtcDatetime
    accepted_at: UtcDatetime | None
    accepted_by: uuid.UUID | None = Field(description="The user (membership) who joined with it.")
    revoked_at: UtcDatetime | None


class InviteIssued(InviteOut):
    token: str = Field(description="Shown once; only its SHA-256 is stored.")
    url: str = Field(description="The invitation link to share.")


class InvitePage(ApiModel):
    items: list[InviteOut]
    next_cursor: str | None


class InviteOrganisation(ApiModel):
    name: str


class InviteRole(ApiModel):
    title: str
    permissions: list[str]


class InvitePreview(ApiModel):
    """What an invitation link shows before it is accepted; nothing more."""

    organisation: InviteOrganisation
    role: InviteRole
    email_bound: bool


class InviteAccept(ApiModel):
    """A new account's credentials. Joining with an existing account sends its X-BINTU-TOKEN instead."""

    email: EmailAddress | None = None
    # Longer than the policy allows, so that the policy (weak_password), not the schema, answers.
    password: str | None = Field(default=None, min_length=1, max_length=1024)
