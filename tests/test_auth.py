"""Login, bintu tokens, logout, token-key renewal, expiry, the API key, rate limits."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from streamward.authn.models import BintuSession
from streamward.crypto import digest
from streamward.db import utcnow
from streamward.users.models import Membership, new_token_key
from tests.conftest import Env


async def test_login_returns_token_expiry_organisation_and_role(env: Env) -> None:
    org = await env.org("Acme")
    admin = await env.member(org, "nanoUser", email="Op@Example.com", token=False)
    response = await env.client.post(
        "/api/user/validate", json={"email": "op@example.COM", "password": admin.password}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"].startswith("swt_") and len(body["token"]) >= 4 + 43
    assert body["expiresAt"].endswith("Z")
    assert body["organisation"] == {"id": str(org.id), "name": "Acme"}
    assert body["role"] == {"name": "nanoUser", "title": "Operator"}
    assert body["user"] == {"id": str(admin.id), "email": "op@example.com"}
    assert "apiKey" not in body  # nanoUser lacks apikey:read


async def test_login_gives_api_key_only_to_roles_holding_apikey_read(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin", token=False)
    body = (
        await env.client.post("/api/user/validate", json={"email": admin.email, "password": admin.password})
    ).json()
    assert body["apiKey"] == org.api_key
    observer = await env.member(org, "nanoReadOnly", token=False)
    body = (
        await env.client.post(
            "/api/user/validate", json={"email": observer.email, "password": observer.password}
        )
    ).json()
    assert "apiKey" not in body


async def test_token_is_stored_only_as_its_sha256(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, login=True)
    async with env.runtime.database.session() as session:
        stored = (await session.execute(select(BintuSession.token_hash))).scalars().all()
    assert stored == [digest(member.token or "")]


async def test_unknown_email_and_wrong_password_get_the_same_answer(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, token=False)
    wrong = await env.client.post(
        "/api/user/validate", json={"email": member.email, "password": "not-it-at-all"}
    )
    unknown = await env.client.post(
        "/api/user/validate", json={"email": "nobody@example.com", "password": "not-it-at-all"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"


async def test_login_input_errors_are_4xx_with_codes(env: Env) -> None:
    cases = [
        ({"email": "a@example.com"}, 422, "validation_error"),
        ({"email": "a@example.com", "password": 5}, 422, "validation_error"),
        ({"email": "a@example.com", "password": "x" * 10_000}, 422, "validation_error"),
        ({"email": "a@example.com", "password": "p", "organisation": "not-a-uuid"}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = await env.client.post("/api/user/validate", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == code
    malformed = await env.client.post(
        "/api/user/validate", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"


async def test_account_in_several_organisations_must_choose(env: Env) -> None:
    first, second = await env.org("First"), await env.org("Second")
    member = await env.member(first, "nanoAdmin", email="both@example.com", token=False)
    await env.member(second, "nanoReadOnly", email="both@example.com", token=False)
    response = await env.client.post(
        "/api/user/validate", json={"email": member.email, "password": member.password}
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "organisation_required"
    assert {o["name"] for o in error["details"]["organisations"]} == {"First", "Second"}

    chosen = await env.client.post(
        "/api/user/validate",
        json={"email": member.email, "password": member.password, "organisation": str(second.id)},
    )
    assert chosen.status_code == 200
    assert chosen.json()["role"]["name"] == "nanoReadOnly"
    stranger = await env.org("Third")
    refused = await env.client.post(
        "/api/user/validate",
        json={"email": member.email, "password": member.password, "organisation": str(stranger.id)},
    )
    assert refused.status_code == 404


async def test_logout_ends_only_the_presented_token(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, login=True)
    other_token = await env.login(member)
    response = await env.client.post("/api/user/logout", headers=member.headers)
    assert response.status_code == 204
    assert (await env.client.get("/api/organisation", headers=member.headers)).status_code == 401
    assert (
        await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": other_token})
    ).status_code == 200


async def test_logout_with_api_key_is_refused(env: Env) -> None:
    org = await env.org()
    response = await env.client.post("/api/user/logout", headers=org.api_headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_a_session"


async def test_token_key_renewal_ends_every_session_with_one_update(env: Env) -> None:
    org = await env.org()
    member = await env.member(org, token=False)
    tokens = [await env.login(member) for _ in range(4)]
    bystander = await env.member(org)
    async with env.runtime.database.session() as session:
        result = await session.execute(
            update(Membership).where(Membership.id == member.id).values(token_key=new_token_key())
        )
        await session.commit()
    assert result.rowcount == 1  # type: ignore[attr-defined]
    for token in tokens:
        response = await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": token})
        assert response.status_code == 401
    assert (await env.client.get("/api/organisation", headers=bystander.headers)).status_code == 200
    # A fresh login works under the new key.
    fresh = await env.login(member)
    assert (await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": fresh})).status_code == 200


async def test_expired_token_is_refused(env: Env) -> None:
    org = await env.org()
    member = await env.member(org)
    async with env.runtime.database.session() as session:
        await session.execute(
            update(BintuSession)
            .where(BintuSession.token_hash == digest(member.token or ""))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    response = await env.client.get("/api/organisation", headers=member.headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


async def test_api_key_authenticates_as_the_organisation(env: Env) -> None:
    org = await env.org("Keyed")
    response = await env.client.get("/api/organisation", headers=org.api_headers)
    assert response.status_code == 200
    assert response.json()["name"] == "Keyed"
    wrong = await env.client.get("/api/organisation", headers={"X-BINTU-APIKEY": org.api_key + "x"})
    assert wrong.status_code == 401


async def test_missing_garbage_and_ambiguous_credentials(env: Env) -> None:
    org = await env.org()
    member = await env.member(org)
    assert (await env.client.get("/api/organisation")).status_code == 401
    for value in ["", "swt_nope", "x" * 5000, "swt_" + "A" * 43]:
        response = await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": value})
        assert response.status_code == 401, value
    both = await env.client.get(
        "/api/organisation", headers={"X-BINTU-TOKEN": member.token or "", "X-BINTU-APIKEY": org.api_key}
    )
    assert both.status_code == 400
    assert both.json()["error"]["code"] == "ambiguous_credentials"


async def test_login_rate_limit_per_account_counts_failures_and_sends_retry_after(env: Env) -> None:
    env.runtime.login_throttle.failures_per_account.capacity = 3
    org = await env.org()
    member = await env.member(org, token=False)
    statuses = []
    for _ in range(4):
        response = await env.client.post(
            "/api/user/validate", json={"email": member.email, "password": "wrong-guess"}
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429]
    limited = await env.client.post(
        "/api/user/validate", json={"email": member.email, "password": member.password}
    )
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    retry_after = int(limited.headers["Retry-After"])
    # No long lockout: one token comes back within one refill interval (300 s / 3 attempts here).
    assert 1 <= retry_after <= 100
    # Another account is not affected.
    other = await env.member(org, token=False)
    ok = await env.client.post("/api/user/validate", json={"email": other.email, "password": other.password})
    assert ok.status_code == 200


async def test_account_bucket_refills_so_the_real_user_gets_back_in(env: Env) -> None:
    throttle = env.runtime.login_throttle.failures_per_account
    throttle.capacity, throttle.rate = 2, 20.0  # refills one attempt every 50 ms
    org = await env.org()
    member = await env.member(org, token=False)
    for _ in range(3):
        await env.client.post("/api/user/validate", json={"email": member.email, "password": "wrong-guess"})
    await asyncio.sleep(0.2)
    response = await env.client.post(
        "/api/user/validate", json={"email": member.email, "password": member.password}
    )
    assert response.status_code == 200


async def test_login_rate_limit_per_client_address(env: Env) -> None:
    throttle = env.runtime.login_throttle.per_address
    # Five attempts, and no refill while the test runs however slow the machine (one an hour).
    throttle.capacity, throttle.rate = 5, 1 / 3600
    org = await env.org()
    member = await env.member(org, token=False)
    async with env.client_from("198.51.100.7") as attacker:
        statuses = [
            (
                await attacker.post(
                    "/api/user/validate", json={"email": f"x{i}@example.com", "password": "wrongwrong"}
                )
            ).status_code
            for i in range(6)
        ]
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    # The real user, from their own address, still logs in.
    ok = await env.client.post(
        "/api/user/validate", json={"email": member.email, "password": member.password}
    )
    assert ok.status_code == 200


async def test_api_key_in_the_login_answer_is_an_audited_reveal(env: Env) -> None:
    from streamward.audit.models import AuditEntry

    org = await env.org()
    admin = await env.member(org, "nanoAdmin", token=False)
    observer = await env.member(org, "nanoReadOnly", token=False)
    for member in (admin, observer):
        await env.client.post("/api/user/validate", json={"email": member.email, "password": member.password})
    async with env.runtime.database.session() as session:
        reveals = (
            (await session.execute(select(AuditEntry).where(AuditEntry.action == "apikey.revealed")))
            .scalars()
            .all()
        )
    assert [(r.actor, r.actor_email, r.after) for r in reveals] == [
        (f"user:{admin.id}", admin.email, {"via": "login"})
    ]
    assert org.api_key not in str([r.after for r in reveals])
