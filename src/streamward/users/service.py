"""Accounts and memberships."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authn.password_policy import check_password
from streamward.authn.passwords import hash_password
from streamward.orgs.models import Organisation
from streamward.users.models import Account, Membership, new_token_key, normalise_email


async def find_account(session: AsyncSession, email: str) -> Account | None:
    statement = select(Account).where(Account.email == normalise_email(email))
    return (await session.execute(statement)).scalar_one_or_none()


async def create_account(session: AsyncSession, *, email: str, password: str) -> Account:
    check_password(password)
    account = Account(email=normalise_email(email), password_hash=await hash_password(password))
    session.add(account)
    await session.flush()
    return account


async def add_membership(
    session: AsyncSession, organisation: Organisation, account: Account, role: str
) -> Membership:
    membership = Membership(
        organisation_id=organisation.id, account_id=account.id, role=role, token_key=new_token_key()
    )
    session.add(membership)
    await session.flush()
    return membership
