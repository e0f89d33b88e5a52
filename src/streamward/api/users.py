"""The users of an organisation (DOMAIN.md's "Users" tab), at the documented bintu paths."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import BackgroundTasks, Response
from pydantic import Field

from streamward.authn.mail import mail_backend, send_quietly
from streamward.authn.mfa import factors, overview
from streamward.authz.principal import Principal
from streamward.pagination import DEFAULT_LIMIT
from streamward.schemas import column_length
from streamward.users import service
from streamward.users.models import Account, Membership
from streamward.users.schemas import (
    PermissionChange,
    TokenKeyOut,
    TokenKeyReset,
    UserDetail,
    UserPage,
    user_page_json,
)
from streamward.web.access import AUTHENTICATED, require
from streamward.web.params import PageCursor, PageLimit, RuntimeDep
from streamward.web.query import QueryModel, query_model
from streamward.web.routing import Router
from streamward.web.session import DbSession, LookupDb, reads, writes

router = Router(prefix="/api/user", tags=["users"])


class UsersQuery(QueryModel):
    """The users list's query (read in one validation: ``web.query``)."""

    role: str | None = Field(
        None,
        max_length=column_length(Membership.role),
        description="Only this role (predefined or custom).",
    )
    q: str | None = Field(
        None, max_length=column_length(Account.email), description="Email starts with (case-insensitive)."
    )
    limit: PageLimit = DEFAULT_LIMIT
    cursor: PageCursor = None


@router.get("", response_model=UserPage, summary="Users of the organisation, newest first")
@reads
async def list_users(
    principal: Annotated[Principal, require("user:read")],
    db: LookupDb,
    query: Annotated[UsersQuery, query_model(UsersQuery)],
) -> Response:
    page = await service.list_users(
        db,
        principal,
        role=query.role,
        email_starts_with=query.q,
        limit=query.limit,
        cursor=query.cursor,
        also=overview.FACTOR_KIND_COLUMNS,
    )
    return Response(user_page_json(page), media_type="application/json")  # UserPage, built from the rows


@router.put(
    "/permission",
    response_model=UserDetail,
    summary="Change a user's role; ends the user's bintu tokens",
)
@writes
async def change_permission(
    body: PermissionChange, principal: Annotated[Principal, require("user:edit")], db: DbSession
) -> UserDetail:
    return UserDetail.of(await service.change_role(db, principal, body.user_id, body.role))


@router.put(
    "/tokenkey",
    response_model=TokenKeyOut,
    summary="Renew a user's token key: every bintu token of that user ends",
    description="Your own with any role; another user's needs `user:token_reset`. "
    "Playback tokens are not affected.",
)
@writes
async def reset_token_key(
    body: TokenKeyReset, principal: Annotated[Principal, AUTHENTICATED], db: DbSession
) -> TokenKeyOut:
    membership = await service.reset_token_key(db, principal, body.user_id)
    return TokenKeyOut(user_id=membership.id, token_key=membership.token_key)


@router.delete(
    "/{user_id:uuid}/mfa",
    status_code=204,
    summary="Remove every second factor of a user (a lost phone); ends all their sessions, mails them",
    description="Not on a user whose role holds permissions you lack. The factors are the person's: "
    "they go for every organisation the person belongs to.",
)
@writes
async def reset_second_factors(
    user_id: uuid.UUID,
    principal: Annotated[Principal, require("user:edit")],
    db: DbSession,
    runtime: RuntimeDep,
    background: BackgroundTasks,
) -> Response:
    message = await factors.reset_member(db, principal, user_id)
    # Sent after the response, so after the commit that removed the factors.
    background.add_task(send_quietly, mail_backend(runtime.settings), message)
    return Response(status_code=204)


# The uuid converter keeps /api/user/{id} from swallowing /api/user/validate, /invite and the like.
@router.get("/{user_id:uuid}", response_model=UserDetail, summary="One user, with the role's permissions")
@reads
async def read_user(
    user_id: uuid.UUID, principal: Annotated[Principal, require("user:read")], db: DbSession
) -> UserDetail:
    return UserDetail.of(await service.get_user(db, principal, user_id))


@router.delete(
    "/{user_id:uuid}",
    status_code=204,
    summary="Remove a user from the organisation; ends their bintu tokens",
)
@writes
async def delete_user(
    user_id: uuid.UUID, principal: Annotated[Principal, require("user:delete")], db: DbSession
) -> Response:
    await service.delete_user(db, principal, user_id)
    return Response(status_code=204)
