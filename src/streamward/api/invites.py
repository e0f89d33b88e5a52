"""Invitations: managed under /api/user/invite; looked up and accepted, without credentials, under
/api/invite/{token}."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import Request, Response

from streamward.authn.schemas import LoginResponse, OrganisationRef, UserRef
from streamward.authz.permissions import ordered
from streamward.authz.principal import Principal
from streamward.db import utcnow
from streamward.invites import acceptance, service
from streamward.invites.models import Invitation
from streamward.invites.schemas import (
    InviteAccept,
    InviteCreate,
    InviteIssued,
    InviteOrganisation,
    InviteOut,
    InvitePage,
    InvitePreview,
    InviteRenew,
    InviteRole,
    InviteStatus,
)
from streamward.pagination import DEFAULT_LIMIT
from streamward.roles.lookup import role_title
from streamward.roles.schemas import RoleRef
from streamward.runtime import client_address
from streamward.schemas import column_query
from streamward.web.access import PUBLIC, require
from streamward.web.authenticate import TOKEN_HEADER
from streamward.web.params import Cursor, Limit, RuntimeDep
from streamward.web.routing import Router
from streamward.web.session import DbSession, reads, writes

manage = Router(prefix="/api/user/invite", tags=["invitations"])
public = Router(prefix="/api/invite", tags=["invitations"])


def _out(invitation: Invitation) -> InviteOut:
    return InviteOut(
        id=invitation.id,
        role=RoleRef(name=invitation.role, title=role_title(invitation.role)),
        email=invitation.email,
        status=service.status_of(invitation, utcnow()),
        created_by=invitation.created_by,
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        accepted_at=invitation.accepted_at,
        accepted_by=invitation.accepted_by_id,
        revoked_at=invitation.revoked_at,
    )


def _issued(issued: service.IssuedInvite) -> InviteIssued:
    return InviteIssued(**_out(issued.invitation).model_dump(), token=issued.token, url=issued.url)


@manage.post(
    "",
    response_model=InviteIssued,
    status_code=201,
    summary="Invite someone; returns the link (its token is shown only now)",
)
@writes
async def create_invitation(
    body: InviteCreate,
    principal: Annotated[Principal, require("user:invite")],
    db: DbSession,
    runtime: RuntimeDep,
) -> InviteIssued:
    issued = await service.create_invitation(
        db,
        principal,
        role=body.role,
        email=body.email,
        expires_in_days=body.expires_in_days,
        base_url=runtime.settings.base_url,
    )
    return _issued(issued)


@manage.get("", response_model=InvitePage, summary="Invitations, newest first")
@reads
async def list_invitations(
    principal: Annotated[Principal, require("user:invite")],
    db: DbSession,
    status: InviteStatus | None = None,
    role: Annotated[str | None, column_query(Invitation.role)] = None,
    q: Annotated[str | None, column_query(Invitation.email, description="Bound email starts with.")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> InvitePage:
    page = await service.list_invitations(
        db, principal, status=status, role=role, email_starts_with=q, limit=limit, cursor=cursor
    )
    return InvitePage(items=[_out(item) for item in page.items], next_cursor=page.next_cursor)


@manage.delete("/{invite_id}", status_code=204, summary="Revoke an invitation")
@writes
async def revoke_invitation(
    invite_id: uuid.UUID, principal: Annotated[Principal, require("user:invite")], db: DbSession
) -> Response:
    await service.revoke_invitation(db, principal, invite_id)
    return Response(status_code=204)


@manage.post(
    "/{invite_id}/renew",
    response_model=InviteIssued,
    summary="A fresh token (and expiry) for an invitation; the old link stops working",
)
@writes
async def renew_invitation(
    invite_id: uuid.UUID,
    principal: Annotated[Principal, require("user:invite")],
    db: DbSession,
    runtime: RuntimeDep,
    body: InviteRenew | None = None,
) -> InviteIssued:
    issued = await service.renew_invitation(
        db,
        principal,
        invite_id,
        expires_in_days=(body or InviteRenew()).expires_in_days,
        base_url=runtime.settings.base_url,
    )
    return _issued(issued)


@public.get(
    "/{token}",
    response_model=InvitePreview,
    dependencies=[PUBLIC],
    summary="What an invitation offers: organisation name, role, whether an email is bound",
)
@reads
async def preview_invitation(
    token: str, request: Request, db: DbSession, runtime: RuntimeDep
) -> InvitePreview:
    await runtime.link_throttle.invitations.charge(client_address(request))
    usable = await acceptance.preview_invitation(db, token)
    return InvitePreview(
        organisation=InviteOrganisation(name=usable.organisation.name),
        role=InviteRole(title=usable.role.title, permissions=ordered(usable.role.permissions)),
        email_bound=usable.invitation.email is not None,
    )


@public.post(
    "/{token}/accept",
    response_model=LoginResponse,
    response_model_exclude_none=True,
    dependencies=[PUBLIC],
    summary="Accept with an email and password (a new account, or that email's account) or with an "
    "existing account's X-BINTU-TOKEN",
)
@writes
async def accept_invitation(
    token: str,
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    body: InviteAccept | None = None,
) -> LoginResponse:
    settings = runtime.settings
    address = client_address(request, trust_forwarded_for=settings.trust_forwarded_for)
    await runtime.link_throttle.invitations.charge(address)
    result = await acceptance.accept_invitation(
        db,
        runtime.login_throttle,
        token,
        email=body.email if body else None,
        password=body.password if body else None,
        bintu_token=request.headers.get(TOKEN_HEADER),
        client_address=address,
        lifetime=timedelta(seconds=settings.session_lifetime_seconds),
    )
    return LoginResponse(
        token=result.issued.token,
        expires_at=result.issued.session.expires_at,
        organisation=OrganisationRef(id=result.organisation.id, name=result.organisation.name),
        role=RoleRef(name=result.membership.role, title=role_title(result.membership.role)),
        user=UserRef(id=result.membership.id, email=result.account.email),
    )
