"""Rules that must hold when requests race: an invitation is used once, an organisation keeps an admin.

The requests really overlap: they go through the app concurrently (asyncio.gather), each in its own
transaction, and on PostgreSQL each on its own connection.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from streamward.invites.models import Invitation
from streamward.users.models import Account, Membership
from tests.conftest import Env
from tests.support.data import count, invitation

PASSWORD = "joining passphrase 42"


async def test_twenty_concurrent_accepts_of_one_invitation_make_exactly_one_membership(env: Env) -> None:
    org = await env.org()
    await env.member(org)
    invite, token = await invitation(env, org, "nanoUser")
    responses = await asyncio.gather(
        *(
            env.client.post(
                f"/api/invite/{token}/accept", json={"email": f"racer{i}@example.com", "password": PASSWORD}
            )
            for i in range(20)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [404] * 19, [r.text for r in responses if r.status_code not in (200, 404)]
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 404} == {"invite_invalid"}
    winner = next(r.json() for r in responses if r.status_code == 200)

    assert await count(env, Membership, organisation_id=org.id, role="nanoUser") == 1
    # The losers' accounts were rolled back with their requests.
    assert await count(env, Account, Account.email.like("racer%")) == 1
    async with env.runtime.database.session(write=False) as session:
        stored = (await session.execute(select(Invitation).where(Invitation.id == invite.id))).scalar_one()
    assert str(stored.accepted_by_id) == winner["user"]["id"]
    assert (
        await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": winner["token"]})
    ).status_code == 200


async def _admins(env: Env, org_id: object) -> int:
    return await count(env, Membership, organisation_id=org_id, role="nanoAdmin")


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(env: Env) -> None:
    for _ in range(3):
        org = await env.org()
        first, second = await env.member(org), await env.member(org)
        responses = await asyncio.gather(
            env.client.put(
                "/api/user/permission",
                json={"userId": str(second.id), "role": "nanoUser"},
                headers=first.headers,
            ),
            env.client.put(
                "/api/user/permission",
                json={"userId": str(first.id), "role": "nanoUser"},
                headers=second.headers,
            ),
        )
        outcomes = sorted((r.status_code, r.json().get("error", {}).get("code")) for r in responses)
        # One wins. The other is refused as the last admin's demotion, or, when it was authenticated
        # only after the winner committed, because its token ended with its own demotion.
        assert outcomes[0] == (200, None), outcomes
        assert outcomes[1] in [(401, "unauthenticated"), (409, "last_admin")], outcomes
        assert await _admins(env, org.id) == 1


async def test_two_admins_deleting_each_other_at_once_leave_one_admin(env: Env) -> None:
    for _ in range(3):
        org = await env.org()
        first, second = await env.member(org), await env.member(org)
        responses = await asyncio.gather(
            env.client.delete(f"/api/user/{second.id}", headers=first.headers),
            env.client.delete(f"/api/user/{first.id}", headers=second.headers),
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 204 and statuses[1] in (401, 409), [r.text for r in responses]
        assert await _admins(env, org.id) == 1


async def test_revoke_and_accept_racing_let_exactly_one_take_effect(env: Env) -> None:
    for _ in range(3):
        org = await env.org()
        admin = await env.member(org)
        invite, token = await invitation(env, org, "nanoReadOnly")
        revoke, accept = await asyncio.gather(
            env.client.delete(f"/api/user/invite/{invite.id}", headers=admin.headers),
            env.client.post(
                f"/api/invite/{token}/accept",
                json={"email": f"x{uuid.uuid4().hex}@example.com", "password": PASSWORD},
            ),
        )
        assert (revoke.status_code, accept.status_code) in [(204, 404), (409, 200)], (
            revoke.text,
            accept.text,
        )
        joined = await count(
            env, Membership, Membership.organisation_id == org.id, Membership.role == "nanoReadOnly"
        )
        assert joined == (1 if accept.status_code == 200 else 0)
