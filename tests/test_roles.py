"""Roles: the list with member counts, one profile, custom roles created, edited (effective on the
members' next request), deleted (with reassignment), and never beyond the editor's own permissions."""

from __future__ import annotations

from sqlalchemy import select

from streamward.authz.permissions import CATALOGUE, NANO_READ_ONLY, PREDEFINED_ROLES, ordered
from streamward.db import utcnow
from streamward.invites.models import Invitation
from tests.conftest import Env
from tests.support.data import audit_entries, custom_role, events, invitation, role_of


async def test_list_has_predefined_then_custom_roles_with_member_counts_and_the_catalogue(env: Env) -> None:
    org = await env.org()
    operator = await env.member(org, "nanoUser")  # reads the list, as documented for nanoUser
    await env.member(org, "nanoAdmin")
    await custom_role(env, org, "zeta", {"stream:read"}, description="Last")
    await custom_role(env, org, "alpha", {"stream:read", "playback:create"})
    await env.member(org, "alpha")
    await env.member(await env.org(), "nanoUser")  # another organisation's member: not counted
    response = await env.client.get("/api/permission/list", headers=operator.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["name"], r["memberCount"], r["predefined"]) for r in body["items"]] == [
        ("nanoAdmin", 1, True),
        ("nanoUser", 1, True),
        ("nanoReadOnly", 0, True),
        ("alpha", 1, False),
        ("zeta", 0, False),
    ]
    admin_role = body["items"][0]
    assert admin_role["title"] == "Administrator"
    assert admin_role["permissions"] == [p.name for p in CATALOGUE]
    assert admin_role["audiences"] == ["dashboard", "bintu-api", "token-service"]
    assert body["items"][3]["audiences"] == ["dashboard", "bintu-api", "token-service"]
    assert body["items"][4]["audiences"] == ["dashboard", "bintu-api"]
    assert body["catalogue"] == [{"name": p.name, "label": p.label} for p in CATALOGUE]


async def test_one_role_profile_predefined_custom_unknown_and_foreign(env: Env) -> None:
    org, other = await env.org(), await env.org()
    admin = await env.member(org)
    await custom_role(env, org, "viewer", {"org:read"}, description="Sees the organisation")
    await custom_role(env, other, "theirs", {"org:read"})
    predefined = (await env.client.get("/api/permission?name=nanoReadOnly", headers=admin.headers)).json()
    assert predefined["title"] == "Observer"
    assert predefined["description"] == NANO_READ_ONLY.description
    assert predefined["permissions"] == ordered(NANO_READ_ONLY.permissions)
    custom = (await env.client.get("/api/permission?name=viewer", headers=admin.headers)).json()
    assert (custom["title"], custom["description"], custom["permissions"], custom["memberCount"]) == (
        "viewer",
        "Sees the organisation",
        ["org:read"],
        0,
    )
    for name in ("nobody", "theirs"):
        response = await env.client.get(f"/api/permission?name={name}", headers=admin.headers)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), name
    assert (await env.client.get("/api/permission", headers=admin.headers)).status_code == 422


async def test_create_a_custom_role_and_the_refusals(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    response = await env.client.post(
        "/api/permission",
        json={
            "name": "streamOps",
            "description": "Runs streams",
            "permissions": ["stream:manage", "stream:read", "stream:read"],
        },
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json() == {
        "name": "streamOps",
        "title": "streamOps",
        "description": "Runs streams",
        "predefined": False,
        "audiences": ["dashboard", "bintu-api"],
        "permissions": ["stream:read", "stream:manage"],
        "memberCount": 0,
    }
    [entry] = await audit_entries(env, action="role.created")
    assert (entry.target_type, entry.target_id) == ("role", "streamOps")
    assert entry.after == {"description": "Runs streams", "permissions": ["stream:read", "stream:manage"]}
    [event] = await events(env, type="role.created")
    assert event.payload == {"name": "streamOps", "permissions": ["stream:read", "stream:manage"]}

    refusals = [
        ({"name": "streamOps", "permissions": []}, 409, "role_exists"),
        ({"name": "nanoAdmin", "permissions": []}, 409, "role_name_reserved"),
        ({"name": "NANOUSER", "permissions": []}, 409, "role_name_reserved"),
        ({"name": "wizard", "permissions": ["stream:read", "magic:cast"]}, 422, "unknown_permission"),
        ({"name": "9lives", "permissions": []}, 422, "validation_error"),
        ({"name": "has space", "permissions": []}, 422, "validation_error"),
        ({"name": "x" * 65, "permissions": []}, 422, "validation_error"),
        ({"name": "ok", "description": "d" * 501, "permissions": []}, 422, "validation_error"),
    ]
    for body, status, code in refusals:
        refused = await env.client.post("/api/permission", json=body, headers=admin.headers)
        assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), body


async def test_a_role_edit_applies_to_the_members_very_next_request_without_ending_sessions(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    await custom_role(env, org, "ops", {"org:read", "user:read"})
    holder = await env.member(org, "ops")
    assert (await env.client.get("/api/user", headers=holder.headers)).status_code == 200

    narrowed = await env.client.put(
        "/api/permission/ops", json={"permissions": ["org:read"]}, headers=admin.headers
    )
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["memberCount"] == 1
    assert (await env.client.get("/api/user", headers=holder.headers)).status_code == 403
    assert (await env.client.get("/api/organisation", headers=holder.headers)).status_code == 200

    widened = await env.client.put(
        "/api/permission/ops",
        json={"permissions": ["org:read", "user:read"], "description": "Back again"},
        headers=admin.headers,
    )
    assert widened.json()["description"] == "Back again"
    assert (await env.client.get("/api/user", headers=holder.headers)).status_code == 200

    unchanged = await env.client.put(
        "/api/permission/ops", json={"description": "Back again"}, headers=admin.headers
    )
    assert unchanged.status_code == 200
    first, second = await audit_entries(env, action="role.updated")  # none for the no-op
    assert (first.before, first.after) == (
        {"description": "", "permissions": ["org:read", "user:read"]},
        {"description": "", "permissions": ["org:read"]},
    )
    assert second.after == {"description": "Back again", "permissions": ["org:read", "user:read"]}
    assert len(await events(env, type="role.updated")) == 2
    missing = await env.client.put("/api/permission/ghost", json={}, headers=admin.headers)
    assert missing.status_code == 404


async def test_predefined_roles_cannot_be_edited_or_deleted(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    for name in PREDEFINED_ROLES:
        edit = await env.client.put(
            f"/api/permission/{name}", json={"permissions": []}, headers=admin.headers
        )
        assert (edit.status_code, edit.json()["error"]["code"]) == (409, "predefined_role")
        drop = await env.client.delete(f"/api/permission/{name}", headers=admin.headers)
        assert (drop.status_code, drop.json()["error"]["code"]) == (409, "predefined_role")


async def test_no_escalation_through_custom_roles(env: Env) -> None:
    org = await env.org()
    await env.member(org)
    manager_permissions = set(NANO_READ_ONLY.permissions | {"role:manage"})
    await custom_role(env, org, "roleManager", manager_permissions)
    await custom_role(env, org, "weak", {"org:read"})
    await custom_role(env, org, "powerful", {"org:read", "apikey:read"})
    manager = await env.member(org, "roleManager")

    async def status(method: str, path: str, body: object = None) -> tuple[int, str]:
        response = await env.client.request(method, path, json=body, headers=manager.headers)
        error = response.json().get("error", {}) if response.content else {}
        return response.status_code, error.get("code", "")

    escalation = (403, "escalation")
    assert (
        await status("POST", "/api/permission", {"name": "mine", "permissions": ["apikey:read"]})
        == escalation
    )
    assert (
        await status("PUT", "/api/permission/weak", {"permissions": ["org:read", "user:delete"]})
        == escalation
    )
    # Not even one's own role.
    own = {"permissions": sorted(manager_permissions | {"user:delete"})}
    assert await status("PUT", "/api/permission/roleManager", own) == escalation
    # Nor strip or delete a role holding more than oneself (its holders would be demoted).
    assert await status("PUT", "/api/permission/powerful", {"permissions": ["org:read"]}) == escalation
    assert await status("DELETE", "/api/permission/powerful") == escalation
    await env.member(org, "weak")
    assert await status("DELETE", "/api/permission/weak?reassignTo=nanoAdmin") == escalation
    assert await role_of(env, (await env.member(org, "weak")).id) == "weak"
    # Within its own permissions the manager may work.
    assert await status("POST", "/api/permission", {"name": "mine", "permissions": ["org:read"]}) == (201, "")
    assert await status("DELETE", "/api/permission/weak?reassignTo=nanoReadOnly") == (204, "")


async def test_delete_a_role_refused_while_held_unless_members_are_reassigned(env: Env) -> None:
    org = await env.org()
    admin = await env.member(org)
    await custom_role(env, org, "unused", {"org:read"})
    assert (await env.client.delete("/api/permission/unused", headers=admin.headers)).status_code == 204
    listed = (await env.client.get("/api/permission/list", headers=admin.headers)).json()["items"]
    assert "unused" not in {role["name"] for role in listed}

    await custom_role(env, org, "ops", {"org:read", "user:read"})
    holders = [await env.member(org, "ops"), await env.member(org, "ops")]
    pending, _ = await invitation(env, org, "ops")
    held = await env.client.delete("/api/permission/ops", headers=admin.headers)
    assert (held.status_code, held.json()["error"]["code"]) == (409, "role_in_use")
    assert held.json()["error"]["details"] == {"memberCount": 2}
    for query, status, code in [
        ("reassignTo=ops", 400, "invalid_reassign"),
        ("reassignTo=ghost", 422, "unknown_role"),
    ]:
        response = await env.client.delete(f"/api/permission/ops?{query}", headers=admin.headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)

    moved = await env.client.delete("/api/permission/ops?reassignTo=nanoReadOnly", headers=admin.headers)
    assert moved.status_code == 204, moved.text
    for holder in holders:
        assert await role_of(env, holder.id) == "nanoReadOnly"
        # A role change for each: their bintu tokens ended.
        assert (await env.client.get("/api/organisation", headers=holder.headers)).status_code == 401
    async with env.runtime.database.session(write=False) as session:
        invite = (await session.execute(select(Invitation).where(Invitation.id == pending.id))).scalar_one()
    assert invite.revoked_at is not None and invite.revoked_at <= utcnow()

    [deleted] = await audit_entries(env, action="role.deleted", target_id="ops")
    assert deleted.after == {"reassignedTo": "nanoReadOnly", "reassignedMembers": 2, "revokedInvitations": 1}
    changes = await audit_entries(env, action="user.role_changed")
    assert {e.target_id for e in changes} == {str(h.id) for h in holders}
    emitted = await events(env, type=("role.deleted", "user.role_changed"))
    assert [(e.type, e.payload.get("name")) for e in emitted] == [
        ("role.deleted", "unused"),
        ("user.role_changed", None),
        ("user.role_changed", None),
        ("role.deleted", "ops"),
    ]
