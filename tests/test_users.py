"""The users of an organisation: list (filters, pagination), one user, role change, token reset, delete."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from streamward.audit.models import AuditEntry
from streamward.authn.models import BintuSession
from streamward.authz.permissions import CATALOGUE, NANO_USER
from streamward.db import utcnow
from streamward.users.models import Account, Membership, new_token_key
from tests.conftest import PASSWORD, CreatedOrg, Env, password_hash
from tests.support.data import audit_entries, count, custom_role, events, role_of

UTC_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def add_users(
    env: Env, org: CreatedOrg, n: int, *, role: str = "nanoUser", prefix: str = "bulk"
) -> list[uuid.UUID]:
    """``n`` memberships in one transaction (no tokens), oldest first."""
    ids = []
    async with env.runtime.database.session() as session:
        hashed = await password_hash(PASSWORD)
        for _ in range(n):
            account = Account(email=f"{prefix}-{uuid.uuid4().hex[:10]}@example.com", password_hash=hashed)
            session.add(account)
            await session.flush()
            membership = Membership(
                organisation_id=org.id, account_id=account.id, role=role, token_key=new_token_key()
            )
            session.add(membership)
            await session.flush()
            ids.append(membership.id)
        await session.commit()
    return ids


async def walk(
    env: Env,
    headers: dict[str, str],
    query: str,
    *,
    between_pages: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """Every id of a list, page by page; ``between_pages`` (an async callable) runs after each page."""
    seen: list[str] = []
    cursor = None
    while True:
        url = f"/api/user?{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await env.client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["nextCursor"]
        if cursor is None:
            return seen
        if between_pages is not None:
            await between_pages()


async def test_list_shows_each_user_with_role_and_token_key_newest_first(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, "nanoAdmin", email="boss@example.com")
    operator = await env.member(org, "nanoUser", email="op@example.com")
    response = await env.client.get("/api/user", headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["nextCursor"] is None
    assert [item["id"] for item in body["items"]] == [str(operator.id), str(admin.id)]
    first = body["items"][0]
    assert set(first) == {"id", "email", "role", "tokenKey", "createdAt", "mfa"}
    assert first["mfa"] == {"totp": False, "passkey": False}  # second factors: test_mfa_policy.py
    assert first["email"] == "op@example.com"
    assert first["role"] == {"name": "nanoUser", "title": "Operator"}
    assert first["tokenKey"] == operator.membership.token_key
    assert UTC_TIMESTAMP.fullmatch(first["createdAt"])


async def test_list_filters_by_predefined_and_custom_role(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    await custom_role(env, org, "streamOps", {"stream:read", "stream:create"})
    ops = await add_users(env, org, 3, role="streamOps")
    users = await add_users(env, org, 2, role="nanoUser")
    by_custom = (await env.client.get("/api/user?role=streamOps", headers=admin.headers)).json()
    assert [item["id"] for item in by_custom["items"]] == [str(i) for i in reversed(ops)]
    assert {item["role"]["title"] for item in by_custom["items"]} == {"streamOps"}
    by_predefined = (await env.client.get("/api/user?role=nanoUser", headers=admin.headers)).json()
    assert [item["id"] for item in by_predefined["items"]] == [str(i) for i in reversed(users)]
    nobody = (await env.client.get("/api/user?role=noSuchRole", headers=admin.headers)).json()
    assert nobody["items"] == []


async def test_email_prefix_search_is_case_insensitive_and_treats_wildcards_literally(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org, email="zed@example.com")
    for email in ["ab_c@example.com", "abxc@example.com", "a%b@example.com", "a\\b@example.com"]:
        await env.member(org, "nanoUser", email=email, token=False)

    async def emails(q: str) -> set[str]:
        response = await env.client.get("/api/user", params={"q": q}, headers=admin.headers)
        assert response.status_code == 200, response.text
        return {item["email"] for item in response.json()["items"]}

    assert await emails("AB") == {"ab_c@example.com", "abxc@example.com"}
    assert await emails("ab_") == {"ab_c@example.com"}  # "_" is not "any character"
    assert await emails("a%") == {"a%b@example.com"}  # "%" is not "anything"
    assert await emails("a\\") == {"a\\b@example.com"}
    assert await emails("abx") == {"abxc@example.com"}
    assert await emails("nobody") == set()


async def test_pagination_covers_every_user_exactly_once_newest_first(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    ids = [admin.id, *await add_users(env, org, 36)]
    seen = await walk(env, admin.headers, "limit=5")
    assert seen == [str(i) for i in reversed(ids)]


async def test_pagination_is_stable_while_users_are_added_between_pages(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    await custom_role(env, org, "streamOps", {"stream:read"})
    before = [admin.id, *await add_users(env, org, 23)]
    ops_before = await add_users(env, org, 9, role="streamOps")
    added_ops: list[uuid.UUID] = []

    async def insert_more() -> None:
        await add_users(env, org, 2)
        added_ops.extend(await add_users(env, org, 1, role="streamOps"))

    seen = await walk(env, admin.headers, "limit=4", between_pages=insert_more)
    assert len(added_ops) >= 5, "the walk should have had several pages"
    # Users that existed when the walk began are all there, exactly once, in order; later ones have
    # newer ids, sort before the cursor, and so are not part of this walk.
    assert seen == [str(i) for i in reversed(before + ops_before)]

    ops_at_start = ops_before + added_ops
    seen_ops = await walk(env, admin.headers, "limit=2&role=streamOps", between_pages=insert_more)
    assert seen_ops == [str(i) for i in reversed(ops_at_start)]


async def test_limit_and_cursor_are_validated(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    for bad in ("limit=0", "limit=201", "limit=x"):
        response = await env.client.get(f"/api/user?{bad}", headers=admin.headers)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "validation_error"
    assert (await env.client.get("/api/user?limit=200", headers=admin.headers)).status_code == 200
    garbage = await env.client.get("/api/user?cursor=%21%21not-a-cursor", headers=admin.headers)
    assert garbage.status_code == 400
    assert garbage.json()["error"]["code"] == "invalid_cursor"


async def test_one_user_shows_role_description_audiences_and_permissions(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    operator = await env.member(org, "nanoUser", email="op@example.com")
    body = (await env.client.get(f"/api/user/{operator.id}", headers=admin.headers)).json()
    assert body["id"] == str(operator.id)
    assert body["email"] == "op@example.com"
    assert body["tokenKey"] == operator.membership.token_key
    assert UTC_TIMESTAMP.fullmatch(body["createdAt"])
    role = body["role"]
    assert (role["name"], role["title"], role["predefined"]) == ("nanoUser", "Operator", True)
    assert role["description"] == NANO_USER.description
    assert role["audiences"] == ["dashboard", "bintu-api", "token-service"]
    assert role["permissions"] == [p.name for p in CATALOGUE if p.name in NANO_USER.permissions]

    await custom_role(env, org, "viewer", {"stream:read", "org:read"}, description="Looks only")
    viewer = await env.member(org, "viewer")
    role = (await env.client.get(f"/api/user/{viewer.id}", headers=admin.headers)).json()["role"]
    assert role == {
        "name": "viewer",
        "title": "viewer",
        "description": "Looks only",
        "predefined": False,
        "audiences": ["dashboard", "bintu-api"],
        "permissions": ["org:read", "stream:read"],
    }
    unknown = await env.client.get(f"/api/user/{uuid.uuid4()}", headers=admin.headers)
    assert unknown.status_code == 404


async def test_role_change_ends_the_users_tokens_and_applies_from_the_next_request(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    demoted = await env.member(org, "nanoAdmin")
    assert (await env.client.get("/api/user", headers=demoted.headers)).status_code == 200
    response = await env.client.put(
        "/api/user/permission",
        json={"userId": str(demoted.id), "role": "nanoReadOnly"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["role"]["name"] == "nanoReadOnly"
    assert body["tokenKey"] != demoted.membership.token_key
    # The very next request with the old token is refused; a fresh login has the new role's rights.
    old_token = await env.client.get("/api/user", headers=demoted.headers)
    assert old_token.status_code == 401
    fresh = {"X-BINTU-TOKEN": await env.login(demoted)}
    assert (await env.client.get("/api/user", headers=fresh)).status_code == 403
    assert (await env.client.get("/api/organisation", headers=fresh)).status_code == 200

    [entry] = await audit_entries(env, action="user.role_changed")
    assert (entry.actor, entry.target_type, entry.target_id) == (f"user:{admin.id}", "user", str(demoted.id))
    assert (entry.before, entry.after) == ({"role": "nanoAdmin"}, {"role": "nanoReadOnly"})
    assert entry.client_address == "203.0.113.10"
    [event] = await events(env, type="user.role_changed")
    assert event.payload == {
        "userId": str(demoted.id),
        "email": demoted.email,
        "from": "nanoAdmin",
        "to": "nanoReadOnly",
    }


async def test_role_change_refusals(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    observer = await env.member(org, "nanoReadOnly")
    stranger = await env.member(await env.org(), "nanoUser", token=False)

    async def change(
        user_id: uuid.UUID, role: str, headers: dict[str, str] = admin.headers
    ) -> tuple[int, str]:
        response = await env.client.put(
            "/api/user/permission", json={"userId": str(user_id), "role": role}, headers=headers
        )
        return response.status_code, response.json()["error"]["code"] if response.status_code >= 400 else ""

    assert await change(observer.id, "noSuchRole") == (422, "unknown_role")
    assert await change(stranger.id, "nanoReadOnly") == (404, "not_found")
    # The only administrator cannot step down.
    assert await change(admin.id, "nanoUser") == (409, "last_admin")
    assert await role_of(env, admin.id) == "nanoAdmin"
    # Changing to the same role changes nothing, not even the token key.
    status, _ = await change(observer.id, "nanoReadOnly")
    assert status == 200
    assert (await env.client.get("/api/organisation", headers=observer.headers)).status_code == 200
    assert await count(env, AuditEntry, action="user.role_changed") == 0


async def test_nobody_grants_a_role_holding_permissions_they_lack(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    editor_permissions = NANO_USER.permissions | {"user:edit"}
    await custom_role(env, org, "userEditor", set(editor_permissions))
    editor = await env.member(org, "userEditor")
    observer = await env.member(org, "nanoReadOnly")

    async def change(user_id: uuid.UUID, role: str) -> tuple[int, dict[str, Any]]:
        response = await env.client.put(
            "/api/user/permission", json={"userId": str(user_id), "role": role}, headers=editor.headers
        )
        return response.status_code, response.json()

    # Promoting someone, or oneself, to a role with more than the editor holds: refused.
    for target in (observer.id, editor.id):
        status, body = await change(target, "nanoAdmin")
        assert status == 403
        assert body["error"]["code"] == "escalation"
        assert "apikey:read" in body["error"]["details"]["missing"]
    # Demoting the administrator (whose role holds more than the editor's): refused as well.
    status, body = await change(admin.id, "nanoReadOnly")
    assert (status, body["error"]["code"]) == (403, "escalation")
    assert await role_of(env, observer.id) == "nanoReadOnly"
    assert await role_of(env, admin.id) == "nanoAdmin"
    # Within the editor's own permissions it works.
    status, _ = await change(observer.id, "nanoUser")
    assert status == 200


async def test_token_reset_ends_every_bintu_token_of_that_user_and_returns_the_new_key(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    user = await env.member(org, "nanoUser")
    tokens = [user.token, await env.issue_token(user), await env.issue_token(user)]
    bystander = await env.member(org, "nanoUser")
    response = await env.client.put(
        "/api/user/tokenkey", json={"userId": str(user.id)}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["userId"] == str(user.id)
    assert body["tokenKey"] != user.membership.token_key
    for token in tokens:
        assert (
            await env.client.get("/api/organisation", headers={"X-BINTU-TOKEN": token or ""})
        ).status_code == 401
    assert (await env.client.get("/api/organisation", headers=bystander.headers)).status_code == 200
    shown = (await env.client.get(f"/api/user/{user.id}", headers=admin.headers)).json()["tokenKey"]
    assert shown == body["tokenKey"]
    [entry] = await audit_entries(env, action="user.token_reset")
    assert (entry.target_id, entry.before, entry.after) == (str(user.id), None, None)
    [event] = await events(env, type="user.token_reset")
    assert event.payload == {"userId": str(user.id), "email": user.email}


async def test_any_member_may_reset_their_own_token_but_not_anothers(env: Env) -> None:
    org = await env.org()
    observer = await env.member(org, "nanoReadOnly")
    other = await env.member(org, "nanoReadOnly")
    refused = await env.client.put(
        "/api/user/tokenkey", json={"userId": str(other.id)}, headers=observer.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    # Without userId: one's own.
    own = await env.client.put("/api/user/tokenkey", json={}, headers=observer.headers)
    assert own.status_code == 200
    assert own.json()["userId"] == str(observer.id)
    assert (await env.client.get("/api/organisation", headers=observer.headers)).status_code == 401
    explicit = await env.client.put(
        "/api/user/tokenkey", json={"userId": str(other.id)}, headers=other.headers
    )
    assert explicit.status_code == 200
    # The API key is nobody in particular: it must say whose.
    keyless = await env.client.put("/api/user/tokenkey", json={}, headers=org.api_headers)
    assert keyless.status_code == 400
    assert keyless.json()["error"]["code"] == "user_id_required"


async def test_delete_removes_membership_and_sessions_and_the_account_when_it_has_no_other(env: Env) -> None:
    first, second = await env.org("First"), await env.org("Second")
    admin = await env.member(first)
    both = await env.member(first, "nanoUser", email="both@example.com")
    elsewhere = await env.member(second, "nanoUser", email="both@example.com")
    only_here = await env.member(first, "nanoReadOnly", email="only@example.com")

    assert (await env.client.delete(f"/api/user/{both.id}", headers=admin.headers)).status_code == 204
    assert (await env.client.get("/api/organisation", headers=both.headers)).status_code == 401
    assert (await env.client.get("/api/organisation", headers=elsewhere.headers)).status_code == 200
    assert await count(env, Account, email="both@example.com") == 1
    assert await count(env, BintuSession, membership_id=both.id) == 0

    assert (await env.client.delete(f"/api/user/{only_here.id}", headers=admin.headers)).status_code == 204
    assert await count(env, Account, email="only@example.com") == 0
    listed = (await env.client.get("/api/user", headers=admin.headers)).json()["items"]
    assert [item["id"] for item in listed] == [str(admin.id)]
    gone = await env.client.get(f"/api/user/{only_here.id}", headers=admin.headers)
    assert gone.status_code == 404

    entries = await audit_entries(env, action="user.deleted")
    assert [(e.target_id, e.before, e.after) for e in entries] == [
        (str(both.id), {"email": "both@example.com", "role": "nanoUser"}, {"accountDeleted": False}),
        (str(only_here.id), {"email": "only@example.com", "role": "nanoReadOnly"}, {"accountDeleted": True}),
    ]
    assert [e.payload["userId"] for e in await events(env, type="user.deleted")] == [
        str(both.id),
        str(only_here.id),
    ]


async def test_delete_keeps_the_last_admin_and_hides_other_organisations(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    last = await env.client.delete(f"/api/user/{admin.id}", headers=admin.headers)
    assert last.status_code == 409
    assert last.json()["error"]["code"] == "last_admin"
    stranger = await env.member(await env.org(), "nanoUser", token=False)
    assert (await env.client.delete(f"/api/user/{stranger.id}", headers=admin.headers)).status_code == 404
    assert await count(env, Membership, id=stranger.id) == 1
    # With a second administrator, one may leave.
    await env.member(org, "nanoAdmin")
    assert (await env.client.delete(f"/api/user/{admin.id}", headers=admin.headers)).status_code == 204


async def test_a_writing_request_with_a_long_idle_token_records_its_use_in_its_own_transaction(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: recording the use of a token idle for a while. On SQLite a second write
    transaction opened for it waited behind the request's own for the whole busy timeout (30 s),
    then gave up with a warning."""
    org = await env.org()
    user = await env.member(org, "nanoReadOnly")
    idle_since = utcnow() - timedelta(minutes=10)
    async with env.runtime.database.session() as session:
        await session.execute(update(BintuSession).values(last_used_at=idle_since))
        await session.commit()
    caplog.set_level(logging.WARNING, logger="streamward.authn.service")
    response = await env.client.put(
        "/api/user/password", json={"currentPassword": "wrong"}, headers=user.headers
    )
    assert response.status_code == 422  # refused, and rolled back: the use is recorded next time
    response = await env.client.put(
        "/api/user/password",
        json={"currentPassword": PASSWORD, "newPassword": "another long passphrase"},
        headers=user.headers,
    )
    assert response.status_code == 204
    assert "could not record session use" not in caplog.text
    async with env.runtime.database.session(write=False) as session:
        used = await session.scalar(
            select(BintuSession.last_used_at).where(BintuSession.membership_id == user.id)
        )
    assert used is not None and used > idle_since


async def test_token_reset_of_a_member_whose_role_holds_more_is_refused(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    from streamward.authz.permissions import NANO_READ_ONLY

    await custom_role(
        env, org, "resetter", set(NANO_READ_ONLY.permissions) | {"user:read", "user:token_reset"}
    )
    resetter = await env.member(org, "resetter")
    peer = await env.member(org, "nanoReadOnly")
    refused = await env.client.put(
        "/api/user/tokenkey", json={"userId": str(admin.id)}, headers=resetter.headers
    )
    assert refused.status_code == 403
    assert (await env.client.get("/api/organisation", headers=admin.headers)).status_code == 200  # still in
    # A member whose role holds no more than the resetter's can be reset.
    allowed = await env.client.put(
        "/api/user/tokenkey", json={"userId": str(peer.id)}, headers=resetter.headers
    )
    assert allowed.status_code == 200, allowed.text
