from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from streamward.authz.deps import require
from streamward.authz.principal import Principal
from streamward.orgs import packages
from streamward.orgs.schemas import OrganisationOut, PackageState

router = APIRouter(prefix="/api/organisation", tags=["organisation"])


@router.get("", response_model=OrganisationOut, summary="The caller's organisation")
async def read_organisation(principal: Annotated[Principal, require("org:read")]) -> OrganisationOut:
    # Loaded with the credential in one query; nothing more to fetch.
    org = principal.organisation
    return OrganisationOut(
        id=org.id,
        name=org.name,
        support_level=org.support_level,
        analytics_level=org.analytics_level,
        trial=org.trial,
        packages=[PackageState.model_validate(p) for p in packages.describe(org.packages)],
        webhook=org.webhook_url,
        vod_public=org.vod_public,
        created_at=org.created_at,
    )
