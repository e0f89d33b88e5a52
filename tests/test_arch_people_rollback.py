"""A dashboard page that shows a refusal keeps nothing the refused attempt wrote.

Joining with an invitation is the one people flow that writes before it can still be refused: the
invitation is used up by a conditional UPDATE, then the account and the membership are inserted,
and only an insert can find that a concurrent request got there first. Both tests drive the
invitation page as a browser does and then look at the database: the invitation is still pending,
no membership, account, audit entry or event of the attempt is left, and the link still works.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.models import AuditEntry
from streamward.errors import Conflict
from streamward.events.models import OutboxEvent
from streamward.invites import acceptance
from streamward.invites.models import Invitation
from streamward.orgs.service import lock_organisation
from streamward.users.models import Account, Membership, new_token_key
from tests.conftest import PASSWORD, CreatedOrg, Env
from tests.support.pages import browser, csrf_of


async def _invitation(env: Env, org: CreatedOrg) -> tuple[uuid.UUID, str]:
    issued = await env.client.post("/api/user/invite", json={"role": "nanoUser"}, headers=org.api_headers)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    return uuid.UUID(body["id"]), body["token"]


async def _count(env: Env, model: Any, *where: Any) -> int:
    async with env.runtime.database.session(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _join_on_the_page(env: Env, token: str, email: str) -> Any:
    visitor = browser(env)
    try:
        page = await visitor.get(f"/invite/{token}")
        assert page.status_code == 200, page.text
        fields = {"csrf_token": csrf_of(page.text), "mode": "signup", "email": email, "password": PASSWORD}
        return await visitor.post(f"/invite/{token}", data=fields)
    finally:
        await visitor.aclose()


async def _assert_nothing_left(
    env: Env, org: CreatedOrg, invitation: tuple[uuid.UUID, str], email: str
) -> None:
    invite_id, token = invitation
    async with env.runtime.database.session(write=False) as session:
        stored = await session.get(Invitation, invite_id)
    assert stored is not None
    assert (stored.accepted_at, stored.accepted_by_id, stored.revoked_at) == (None, None, None)
    in_org = Membership.organisation_id == org.id
    assert await _count(env, Membership, in_org, Membership.account_id.in_(_account_of(email))) == 0
    assert await _count(env, AuditEntry, AuditEntry.action == "user.joined") == 0
    assert await _count(env, OutboxEvent, OutboxEvent.type == "user.joined") == 0
    # The link still works: the invitation is as usable as before the attempt.
    assert (await env.client.get(f"/api/invite/{token}")).status_code == 200


def _account_of(email: str) -> Any:
    return select(Account.id).where(Account.email == email)


async def test_a_refusal_after_the_invitation_was_used_up_rolls_the_whole_join_back(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused after every write of the join (the invitation's UPDATE, the new account, the
    membership): the page shows the refusal, and the request's transaction is rolled back."""
    org = await env.org()
    invitation = await _invitation(env, org)

    async def refused_token(*_: Any, **__: Any) -> Any:
        raise Conflict("Stands in for any refusal after the join's writes.")

    monkeypatch.setattr(acceptance, "issue_token", refused_token)
    newcomer = "newcomer@example.com"
    response = await _join_on_the_page(env, invitation[1], newcomer)
    # The page is re-rendered for the refused attempt: within it, the invitation reads as used.
    assert response.status_code in (404, 409), response.text

    await _assert_nothing_left(env, org, invitation, newcomer)
    assert await _count(env, Account, Account.email == newcomer) == 0


async def test_a_join_beaten_by_a_concurrent_one_is_refused_on_the_page_and_keeps_the_invitation(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real late refusal: the existing account joined the organisation through another request
    between the membership check and the insert. The insert fails after the invitation's UPDATE;
    the page answers 409 with the invitation form (not a 500), and the invitation stays pending."""
    home, org = await env.org(), await env.org()
    known = await env.member(home, "nanoUser", email="known@example.com", token=False)
    invitation = await _invitation(env, org)

    async def lock_after_a_concurrent_join(session: AsyncSession, organisation_id: uuid.UUID) -> None:
        await lock_organisation(session, organisation_id)
        # What the concurrent request committed, written here so both engines see it at this point
        # (on SQLite a second writer could not run while this request holds the write lock).
        session.add(
            Membership(
                organisation_id=organisation_id,
                account_id=known.account.id,
                role="nanoReadOnly",
                token_key=new_token_key(),
            )
        )
        await session.flush()

    monkeypatch.setattr(acceptance, "lock_organisation", lock_after_a_concurrent_join)
    response = await _join_on_the_page(env, invitation[1], known.email)
    assert response.status_code == 409, response.text
    assert "This account is a member of the organisation already." in response.text
    assert 'name="csrf_token"' in response.text  # the invitation form again, ready for another try

    await _assert_nothing_left(env, org, invitation, known.email)
