"""The overview's API access section: API key (audited reveal, rotation that stops the old key at
once), player key, and named long-lived bintu tokens for automation."""

from __future__ import annotations

import json

from sqlalchemy import update

from streamward.authn.models import BintuSession
from streamward.crypto import digest
from streamward.orgs.models import Organisation
from streamward.users.models import Membership, new_token_key
from tests.conftest import Env
from tests.support.data import audit_entries, events


async def test_api_key_reveal_is_audited_without_the_key(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    for _ in range(2):
        response = await env.client.get("/api/organisation/apikey", headers=admin.headers)
        assert response.status_code == 200 and response.json() == {"apiKey": org.api_key}
    entries = await audit_entries(env, org=org, action="apikey.revealed")
    assert len(entries) == 2
    assert {e.actor for e in entries} == {f"user:{admin.id}"}
    assert entries[0].client_address == "203.0.113.10"
    assert org.api_key not in json.dumps([[e.before, e.after, e.target_id] for e in entries])


async def test_api_key_rotation_stops_the_old_key_at_once(env: Env) -> None:
    org = await env.org()
    old_key = org.api_key
    unconfirmed = await env.client.post("/api/organisation/apikey/rotate", json={}, headers=org.api_headers)
    assert unconfirmed.status_code == 422
    assert (await env.client.get("/api/organisation", headers=org.api_headers)).status_code == 200

    response = await env.client.post(
        "/api/organisation/apikey/rotate", json={"confirm": True}, headers=org.api_headers
    )
    assert response.status_code == 200, response.text
    new_key = response.json()["apiKey"]
    assert new_key.startswith("swk_") and new_key != old_key
    assert (await env.client.get("/api/organisation", headers={"X-BINTU-APIKEY": old_key})).status_code == 401
    assert (await env.client.get("/api/organisation", headers={"X-BINTU-APIKEY": new_key})).status_code == 200
    revealed = await env.client.get("/api/organisation/apikey", headers={"X-BINTU-APIKEY": new_key})
    assert revealed.json()["apiKey"] == new_key

    async with env.runtime.database.session() as session:
        stored = await session.get(Organisation, org.id)
        assert stored is not None and stored.api_key_hash == digest(new_key)
        assert new_key not in stored.api_key_sealed
    (event,) = await events(env, org=org, type="apikey.rotated")
    assert event.payload == {"id": str(org.id), "rotatedBy": "apikey"}
    (entry,) = await audit_entries(env, org=org, action="apikey.rotated")
    assert new_key not in json.dumps([entry.before, entry.after]) and old_key not in json.dumps(entry.after)


async def test_player_key_read_and_rotate(env: Env) -> None:
    org = await env.org()
    observer = await env.member(org, "nanoReadOnly")
    first = (await env.client.get("/api/organisation/playerkey", headers=observer.headers)).json()[
        "playerKey"
    ]
    assert first.startswith("swp_")
    rotated = await env.client.post(
        "/api/organisation/playerkey/rotate", json={"confirm": True}, headers=org.api_headers
    )
    second = rotated.json()["playerKey"]
    assert second != first
    assert (await env.client.get("/api/organisation/playerkey", headers=observer.headers)).json() == {
        "playerKey": second
    }
    (event,) = await events(env, org=org, type="organisation.updated")
    assert event.payload == {"id": str(org.id), "changed": ["playerKey"]}


async def test_named_bintu_token_for_automation(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    response = await env.client.post(
        "/api/bintu/token", json={"name": "CI deploys", "expiresInDays": 90}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (
        body["name"] == "CI deploys" and body["token"].startswith("swt_") and body["expiresAt"].endswith("Z")
    )
    automation = {"X-BINTU-TOKEN": body["token"]}
    assert (await env.client.get("/api/organisation", headers=automation)).status_code == 200

    async with env.runtime.database.session() as session:
        stored = (
            await session.execute(
                BintuSession.__table__.select().where(BintuSession.token_hash == digest(body["token"]))
            )
        ).one()
    assert stored.name == "CI deploys"
    assert 89 <= (stored.expires_at - stored.created_at).days <= 90
    (entry,) = await audit_entries(env, org=org, action="token.created")
    assert body["token"] not in json.dumps(entry.after)

    # Ended by its owner's token-key renewal, like any other bintu token.
    async with env.runtime.database.session() as session:
        await session.execute(
            update(Membership).where(Membership.id == admin.id).values(token_key=new_token_key())
        )
        await session.commit()
    assert (await env.client.get("/api/organisation", headers=automation)).status_code == 401


async def test_named_bintu_token_refusals(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    with_key = await env.client.post(
        "/api/bintu/token", json={"name": "x", "expiresInDays": 1}, headers=org.api_headers
    )
    assert (with_key.status_code, with_key.json()["error"]["code"]) == (400, "user_required")
    for body in ({"name": "", "expiresInDays": 1}, {"name": "x", "expiresInDays": 366}, {"name": "x"}):
        assert (
            await env.client.post("/api/bintu/token", json=body, headers=admin.headers)
        ).status_code == 422
