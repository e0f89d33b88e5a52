from __future__ import annotations

import uuid

from streamward.schemas import ApiModel, UtcDatetime


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
