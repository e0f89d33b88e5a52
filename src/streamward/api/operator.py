"""The platform operator's API (``/api/operator/...``): organisations' packages, levels and trial.

Authenticated by ``Authorization: Bearer <STREAMWARD_OPERATOR_TOKEN>``, compared in constant time.
Without that setting the API does not exist (404), so a deployment that never configured it has
nothing to guess at. The operator stands above the tenants: these routes are not tenant-scoped.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from streamward.audit.service import Actor
from streamward.crypto import same
from streamward.errors import NotFound, Unauthenticated
from streamward.orgs import service
from streamward.orgs.models import Organisation
from streamward.orgs.schemas import OperatorOrganisationOut, OperatorOrganisationPage, OrganisationPatch
from streamward.pagination import DEFAULT_LIMIT
from streamward.runtime import client_address
from streamward.web.access import access_rule
from streamward.web.params import Cursor, Limit, RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes

router = Router(prefix="/api/operator", tags=["platform operator"])


@access_rule("operator")
async def operator(request: Request, runtime: RuntimeDep) -> Actor:
    """The caller presents the operator token; returns the audit actor ``operator``."""
    configured = runtime.settings.operator_token
    expected = configured.get_secret_value() if configured is not None else ""
    if not expected:
        raise NotFound(
            "The operator API is disabled (STREAMWARD_OPERATOR_TOKEN is not set).",
            code="operator_api_disabled",
        )
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not same(presented.strip(), expected):
        raise Unauthenticated(
            "Send the operator token as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    address = client_address(request, trust_forwarded_for=runtime.settings.trust_forwarded_for)
    return Actor("operator", client_address=address)


OPERATOR_ACCESS = Depends(operator)


def organisation_out(organisation: Organisation) -> OperatorOrganisationOut:
    return OperatorOrganisationOut(
        id=organisation.id,
        name=organisation.name,
        support_level=organisation.support_level,
        analytics_level=organisation.analytics_level,
        trial=organisation.trial,
        packages=sorted(organisation.packages),
        vod_public=organisation.vod_public,
        webhook=organisation.webhook_url,
        created_at=organisation.created_at,
    )


@router.get("/organisation", response_model=OperatorOrganisationPage, summary="All organisations")
@reads
async def list_organisations(
    _: Annotated[Actor, OPERATOR_ACCESS],
    db: DbSession,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> OperatorOrganisationPage:
    page = await service.list_organisations(db, limit=limit, cursor=cursor)
    return OperatorOrganisationPage(
        items=[organisation_out(org) for org in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/organisation/{organisation_id}", response_model=OperatorOrganisationOut, summary="One organisation"
)
@reads
async def read_organisation(
    organisation_id: uuid.UUID, _: Annotated[Actor, OPERATOR_ACCESS], db: DbSession
) -> OperatorOrganisationOut:
    return organisation_out(await service.get_organisation(db, organisation_id))


@router.patch(
    "/organisation/{organisation_id}",
    response_model=OperatorOrganisationOut,
    summary="Change an organisation's name, levels, trial flag or packages",
)
@writes
async def update_organisation(
    organisation_id: uuid.UUID,
    body: OrganisationPatch,
    actor: Annotated[Actor, OPERATOR_ACCESS],
    db: DbSession,
) -> OperatorOrganisationOut:
    changes = service.OrganisationChanges(
        name=body.name,
        support_level=body.support_level,
        analytics_level=body.analytics_level,
        trial=body.trial,
        packages=body.packages,
        add_packages=body.add_packages,
        remove_packages=body.remove_packages,
    )
    return organisation_out(await service.update_organisation(db, organisation_id, changes, actor=actor))
