from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field

from streamward.orgs.models import Organisation
from streamward.schemas import ApiModel, ColumnText, UtcDatetime

SupportLevel = Literal["basic", "standard", "premium", "enterprise"]
AnalyticsLevel = Literal["basic", "full", "premium"]


class PackageFeature(ApiModel):
    key: str
    title: str
    enabled: bool


class PackageState(ApiModel):
    key: str
    title: str
    enabled: bool
    features: list[PackageFeature] = []


class OrganisationOut(ApiModel):
    id: uuid.UUID
    name: str
    support_level: str
    analytics_level: str
    trial: bool
    packages: list[PackageState]
    webhook: str | None
    vod_public: bool
    created_at: UtcDatetime


class Confirmation(ApiModel):
    """Rotations that break every client of the old credential at once must be confirmed."""

    confirm: Literal[True] = Field(description="Must be true: the old value stops working at once.")


class ApiKeyOut(ApiModel):
    api_key: str


class PlayerKeyOut(ApiModel):
    player_key: str


class WebhookOut(ApiModel):
    webhook: str | None
    events: list[str] = Field(description="Subscribed management events.")
    has_secret: bool
    disabled_at: UtcDatetime | None = Field(
        description="Set when the receiver answered 410 Gone; saving the webhook again re-enables it."
    )


class WebhookUpdate(ApiModel):
    webhook: Annotated[str, ColumnText(Organisation.webhook_url)] = Field(
        description="http(s) URL of a public host."
    )
    events: list[str] | None = Field(
        default=None, max_length=50, description="Management events to send; omitted: unchanged."
    )


class WebhookSaved(WebhookOut):
    secret: str | None = Field(
        default=None, description="The signing secret: only in the reply that created it."
    )


class WebhookSecretOut(ApiModel):
    secret: str


class VodSettings(ApiModel):
    public: bool


class MfaPolicy(ApiModel):
    required: bool = Field(
        description="Every member needs a second factor; one without gets only an enrolment session."
    )


class OperatorOrganisationOut(ApiModel):
    id: uuid.UUID
    name: str
    support_level: str
    analytics_level: str
    trial: bool
    packages: list[str] = Field(description="Enabled package keys.")
    vod_public: bool
    webhook: str | None
    created_at: UtcDatetime


class OperatorOrganisationPage(ApiModel):
    items: list[OperatorOrganisationOut]
    next_cursor: str | None


class OrganisationPatch(ApiModel):
    name: Annotated[str, ColumnText(Organisation.name)] | None = None
    support_level: SupportLevel | None = None
    analytics_level: AnalyticsLevel | None = None
    trial: bool | None = None
    packages: list[str] | None = Field(default=None, description="Replaces the set of packages.")
    add_packages: list[str] | None = None
    remove_packages: list[str] | None = None
