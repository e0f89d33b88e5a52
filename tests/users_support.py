"""Factories for the user-management tests. They write straight to the database and issue bintu
tokens without a login, so no test pays for password hashing it does not test."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from streamward.audit.models import AuditEntry
from streamward.authn.service import issue_token
from streamward.authz.permissions import ADMIN_ROLE
from streamward.crypto import digest, new_token
from streamward.db import utcnow
from streamward.events.models import OutboxEvent
from streamward.invites.models import Invitation
from streamward.roles.models import CustomRole
from streamward.users.models import Membership
from tests.conftest import CreatedOrg, Env, Member


async def member(env: Env, org: CreatedOrg, role: str = ADMIN_ROLE, *, email: str | None = None) -> Member:
    """A member with a bintu token (issued directly: no login, no password verification)."""
    created = await env.member(org, role, email=email, login=False)
    created.token = await token_for(env, created)
    return created


async def token_for(env: Env, who: Member) -> str:
    async with env.runtime.database.session() as session:
        issued = await issue_token(session, who.membership, timedelta(hours=1))
        await session.commit()
    return issued.token


async def fresh_token_key(env: Env, who: Member) -> None:
    """Reload the member's token key (after it was renewed through the API)."""
    async with env.runtime.database.session() as session:
        who.membership = (
            await session.execute(select(Membership).where(Membership.id == who.id))
        ).scalar_one()


async def custom_role(
    env: Env, org: CreatedOrg, name: str, permissions: set[str], description: str = ""
) -> None:
    async with env.runtime.database.session() as session:
        session.add(
            CustomRole(
                organisation_id=org.id, name=name, description=description, permissions=sorted(permissions)
            )
        )
        await session.commit()


async def invitation(
    env: Env,
    org: CreatedOrg,
    role: str = "nanoUser",
    *,
    email: str | None = None,
    expires_in: timedelta = timedelta(days=7),
    **state: Any,
) -> tuple[Invitation, str]:
    """An invitation and its token; ``state`` may set accepted_at / revoked_at."""
    token = new_token("swi")
    async with env.runtime.database.session() as session:
        invite = Invitation(
            organisation_id=org.id,
            token_hash=digest(token),
            role=role,
            email=email,
            created_by="system",
            expires_at=utcnow() + expires_in,
            **state,
        )
        session.add(invite)
        await session.commit()
    return invite, token


async def count(env: Env, model: Any, *where: Any) -> int:
    async with env.runtime.database.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def audit_entries(env: Env, *where: Any) -> list[AuditEntry]:
    async with env.runtime.database.session(write=False) as session:
        statement = select(AuditEntry).where(*where).order_by(AuditEntry.id)
        return list((await session.execute(statement)).scalars())


async def events(env: Env, *where: Any) -> list[OutboxEvent]:
    async with env.runtime.database.session(write=False) as session:
        statement = select(OutboxEvent).where(*where).order_by(OutboxEvent.id)
        return list((await session.execute(statement)).scalars())


async def role_of(env: Env, membership_id: uuid.UUID) -> str | None:
    async with env.runtime.database.session(write=False) as session:
        return await session.scalar(select(Membership.role).where(Membership.id == membership_id))
