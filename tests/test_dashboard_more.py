"""The dashboard's roles, audit log, webhook deliveries and streams pages, driven over HTTP like a
browser: signed in, follow the pages, scrape each form's CSRF token, submit forms."""

from __future__ import annotations

import csv
import html
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from streamward.audit.export import CSV_COLUMNS
from streamward.authz.permissions import CATALOGUE, NANO_READ_ONLY
from streamward.events.models import OutboxEvent
from streamward.roles.models import CustomRole
from streamward.streams.models import Stream
from streamward.worker import worker_for
from tests.conftest import CreatedOrg, Env, SignIn
from tests.support.data import (
    ALL_PACKAGES,
    configure_webhook,
    create_stream,
    custom_role,
    emit_event,
    role_of,
    set_state,
)
from tests.support.pages import (
    assert_page,
    assert_refused,
    csrf_of,
    flash_of,
    followed,
    signed_in_through_form,
    submit,
)
from tests.support.receiver import Receiver, Reply


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhook_targets": True, "webhook_timeout_seconds": 1.0}


async def stream_state(env: Env, stream_id: str) -> str:
    async with env.runtime.database.session(write=False) as session:
        stream = await session.get(Stream, uuid.UUID(stream_id))
        assert stream is not None
        return stream.state


async def streams_of(env: Env, org: CreatedOrg) -> list[Stream]:
    async with env.runtime.database.session(write=False) as session:
        rows = await session.execute(
            select(Stream).where(Stream.organisation_id == org.id).order_by(Stream.id)
        )
        return list(rows.scalars())


async def role_row(env: Env, org: CreatedOrg, name: str) -> CustomRole | None:
    async with env.runtime.database.session(write=False) as session:
        return (
            await session.execute(
                select(CustomRole).where(CustomRole.organisation_id == org.id, CustomRole.name == name)
            )
        ).scalar_one_or_none()


# --- access ---------------------------------------------------------------------------------------

PAGES = ["/roles", "/roles/new", "/audit", "/webhook/deliveries", "/streams", "/streams/new"]


async def test_pages_render_for_permitted_roles_refuse_others_and_send_strangers_to_login(
    env: Env, sign_in: SignIn, stranger: httpx.AsyncClient
) -> None:
    org = await env.org()
    await custom_role(env, org, "orgOnly", {"org:read"})
    admin = await sign_in(await env.member(org, "nanoAdmin", token=False))
    operator = await sign_in(await env.member(org, "nanoUser", token=False))
    observer = await sign_in(await env.member(org, "nanoReadOnly", token=False))
    outsider = await sign_in(await env.member(org, "orgOnly", token=False))
    lacking = {
        "/roles": [operator, observer, outsider],
        "/roles/new": [operator, observer, outsider],
        "/audit": [operator, observer, outsider],
        "/webhook/deliveries": [outsider],
        "/streams": [outsider],
        "/streams/new": [observer, outsider],
    }
    for path in PAGES:
        text = assert_page(await admin.get(path))
        assert "<h1>" in text
        for client in lacking[path]:
            assert_refused(await client.get(path))
        response = await stranger.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    assert_page(await operator.get("/webhook/deliveries"))
    assert_page(await observer.get("/streams"))
    assert (await admin.get("/audit/export.csv")).headers["content-type"].startswith("text/csv")
    assert_refused(await operator.get("/audit/export.csv"))
    assert (await stranger.get("/audit/export.csv")).status_code == 303
    # The nav links to each page only for those who may open it.
    nav = assert_page(await admin.get("/streams"))
    for link in ('href="/roles"', 'href="/audit"', 'href="/webhook/deliveries"'):
        assert link in nav
    observed = assert_page(await observer.get("/streams"))
    assert 'href="/roles"' not in observed and 'href="/audit"' not in observed


async def test_every_post_needs_the_session_bound_csrf_token(env: Env, sign_in: SignIn) -> None:
    org = await env.org()
    await custom_role(env, org, "spare", {"org:read"})
    stream = await create_stream(env, org, tags=["a"])
    admin_member = await env.member(org, "nanoAdmin", token=False)
    admin = await sign_in(admin_member)
    other = await sign_in(await env.member(org, "nanoAdmin", token=False))
    foreign_token = csrf_of((await other.get("/streams")).text)
    posts = {
        "/roles": {"name": "sneaky", "permission": "org:read"},
        "/roles/spare/edit": {"description": "x", "permission": "org:read"},
        "/roles/spare/delete": {},
        f"/webhook/deliveries/{uuid.uuid4()}/redeliver": {},
        "/streams": {"tags": "x"},
        f"/streams/{stream['id']}/tags": {"tags": "b"},
        f"/streams/{stream['id']}/lock": {},
        f"/streams/{stream['id']}/unlock": {},
        f"/streams/{stream['id']}/stop": {},
        f"/streams/{stream['id']}/delete": {},
    }
    for path, data in posts.items():
        assert_refused(await admin.post(path, data=data), "csrf_refused")
        # Another session's token does not fit this session.
        assert_refused(await admin.post(path, data=data | {"csrf_token": foreign_token}), "csrf_refused")
    assert await role_row(env, org, "sneaky") is None
    assert await role_row(env, org, "spare") is not None
    assert len(await streams_of(env, org)) == 1
    assert await stream_state(env, stream["id"]) == "created"


async def test_forged_posts_from_roles_lacking_the_permission_are_refused(env: Env, sign_in: SignIn) -> None:
    org = await env.org()
    await custom_role(env, org, "spare", {"org:read"})
    stream = await create_stream(env, org, tags=["a"])
    observer = await sign_in(await env.member(org, "nanoReadOnly", token=False))
    token = csrf_of((await observer.get("/streams")).text)  # a valid token of the observer's own session
    for path, data in {
        "/roles": {"name": "sneaky", "permission": "org:read"},
        "/roles/spare/delete": {},
        f"/webhook/deliveries/{uuid.uuid4()}/redeliver": {},
        "/streams": {"tags": "x"},
        f"/streams/{stream['id']}/tags": {"tags": "b"},
        f"/streams/{stream['id']}/lock": {},
        f"/streams/{stream['id']}/delete": {},
    }.items():
        assert_refused(await observer.post(path, data=data | {"csrf_token": token}))
    assert await role_row(env, org, "sneaky") is None
    assert await stream_state(env, stream["id"]) == "created"


# --- streams --------------------------------------------------------------------------------------


async def test_streams_create_tag_lock_unlock_delete_end_to_end(env: Env, sign_in: SignIn) -> None:
    org = await env.org()
    admin = await sign_in(await env.member(org, "nanoAdmin", token=False))
    form = assert_page(await admin.get("/streams/new"))
    assert 'name="transcode"' not in form  # the organisation has no Transcoding package
    assert "Upgrade needed" in form

    response = await submit(
        admin, "/streams/new", "/streams", {"tags": "event:keynote\n lobby \n\nlobby", "group_id": "g-1"}
    )
    (stream,) = await streams_of(env, org)
    stream_id = str(stream.id)
    assert stream.group_id == "g-1"
    detail = await followed(admin, response, f"/streams/{stream_id}")
    assert flash_of(detail) == (
        "success",
        f"The stream {stream.name} was created: point your broadcaster at the ingest URL below.",
    )
    assert "rtmp://" in detail and stream.name in detail
    listed = assert_page(await admin.get("/streams"))
    assert "data-flash" not in listed  # said once
    assert stream.name in listed and "event:keynote" in listed and "lobby" in listed
    assert stream.name in assert_page(await admin.get("/streams?tag=lobby"))
    assert stream.name not in assert_page(await admin.get("/streams?tag=elsewhere"))
    assert stream.name not in assert_page(await admin.get("/streams?state=live"))

    response = await submit(
        admin, f"/streams/{stream_id}", f"/streams/{stream_id}/tags", {"tags": "lobby\nstage"}
    )
    detail = await followed(admin, response, f"/streams/{stream_id}")
    assert flash_of(detail) == ("success", f"The tags of {stream.name} were saved.")
    assert "lobby\nstage</textarea>" in detail
    tagged = (await env.client.get(f"/api/stream/{stream_id}", headers=org.api_headers)).json()
    assert tagged["tags"] == ["lobby", "stage"]

    listed = assert_page(await admin.get("/streams"))
    assert f'action="/streams/{stream_id}/lock"' in listed
    assert f'data-dialog-open="delete-{stream_id}"' in listed
    assert f'<dialog id="delete-{stream_id}"' in listed
    assert f'action="/streams/{stream_id}/unlock"' not in listed
    assert f'data-dialog-open="stop-{stream_id}"' not in listed  # not live

    listed = await followed(admin, await submit(admin, "/streams", f"/streams/{stream_id}/lock"), "/streams")
    assert await stream_state(env, stream_id) == "locked"
    assert flash_of(listed) == (
        "success",
        f"The stream {stream.name} was locked: it cannot go live or be deleted until unlocked.",
    )
    assert f'action="/streams/{stream_id}/unlock"' in listed
    assert f'data-dialog-open="delete-{stream_id}"' not in listed  # a locked stream cannot be deleted
    # A stale page's button meets the lifecycle table: refused, with a fixed message.
    refused = await followed(
        admin, await submit(admin, "/streams", f"/streams/{stream_id}/delete"), "/streams"
    )
    kind, text = flash_of(refused)
    assert kind == "danger" and "Nothing was changed" in text and "does not fit the stream" in text
    assert await stream_state(env, stream_id) == "locked"

    listed = await followed(
        admin, await submit(admin, "/streams", f"/streams/{stream_id}/unlock"), "/streams"
    )
    assert flash_of(listed) == ("success", f"The stream {stream.name} was unlocked.")
    assert await stream_state(env, stream_id) == "created"

    await set_state(env, stream_id, "live")
    listed = assert_page(await admin.get("/streams"))
    assert f'<dialog id="stop-{stream_id}"' in listed
    listed = await followed(admin, await submit(admin, "/streams", f"/streams/{stream_id}/stop"), "/streams")
    assert flash_of(listed) == ("success", f"The stream {stream.name} was stopped.")
    assert await stream_state(env, stream_id) == "ended"

    listed = await followed(
        admin, await submit(admin, "/streams", f"/streams/{stream_id}/delete"), "/streams"
    )
    assert flash_of(listed) == ("success", f"The stream {stream.name} was deleted.")
    assert await stream_state(env, stream_id) == "deleted"
    assert stream.name not in assert_page(await admin.get("/streams"))
    assert stream.name in assert_page(await admin.get("/streams?state=deleted"))
    gone = assert_page(await admin.get(f"/streams/{stream_id}"))
    assert f'action="/streams/{stream_id}/tags"' not in gone


async def test_stream_forms_show_the_services_refusals(env: Env, sign_in: SignIn) -> None:
    org = await env.org()
    admin = await sign_in(await env.member(org, "nanoAdmin", token=False))
    bad_group = await submit(admin, "/streams/new", "/streams", {"tags": "a", "group_id": "no spaces"})
    text = assert_page(bad_group, 422)
    assert "Group id" in text and "no spaces" in text  # the form keeps what was typed
    too_long = await submit(admin, "/streams/new", "/streams", {"tags": "x" * 65})
    assert "at most 64 characters" in assert_page(too_long, 422)
    # A forged transcode: the package gate of the service refuses it.
    upgrade = await submit(
        admin, "/streams/new", "/streams", {"tags": "a", "transcode": "vtrans2-852x480x800x25"}
    )
    assert "Transcoding package" in assert_page(upgrade, 403)
    assert await streams_of(env, org) == []


async def test_transcodes_offered_with_the_package(env: Env, sign_in: SignIn) -> None:
    org = await env.org(packages=ALL_PACKAGES)
    admin = await sign_in(await env.member(org, "nanoAdmin", token=False))
    form = assert_page(await admin.get("/streams/new"))
    assert 'name="transcode" value="vtrans2-852x480x800x25"' in form
    page = await admin.get("/streams/new")
    response = await admin.post(
        "/streams",
        data={
            "csrf_token": csrf_of(page.text),
            "tags": "",
            "transcode": ["vtrans2-852x480x800x25", "vtrans2-640x360x400x25"],
        },
    )
    (stream,) = await streams_of(env, org)
    assert [t["profile"] for t in stream.transcodes] == ["vtrans2-852x480x800x25", "vtrans2-640x360x400x25"]
    detail = await followed(admin, response, f"/streams/{stream.id}")
    kind, said = flash_of(detail)
    assert kind == "success" and said.startswith(f"The stream {stream.name} was created")
    assert f"{stream.name}-1/index.m3u8" in detail


async def test_stream_controls_follow_the_viewers_permissions(env: Env, sign_in: SignIn) -> None:
    org = await env.org()
    stream = await create_stream(env, org, tags=["a"])
    observer = await sign_in(await env.member(org, "nanoReadOnly", token=False))
    operator = await sign_in(await env.member(org, "nanoUser", token=False))

    listed = assert_page(await observer.get("/streams"))
    assert stream["name"] in listed
    assert 'href="/streams/new"' not in listed
    assert "<dialog" not in listed and 'method="post" action="/streams/' not in listed
    detail = assert_page(await observer.get(f"/streams/{stream['id']}"))
    assert f'action="/streams/{stream["id"]}/tags"' not in detail and "<dialog" not in detail

    listed = assert_page(await operator.get("/streams"))
    assert 'href="/streams/new"' in listed  # stream:create
    assert "/lock" not in listed and "<dialog" not in listed  # no stream:manage
    detail = assert_page(await operator.get(f"/streams/{stream['id']}"))
    assert f'action="/streams/{stream["id"]}/tags"' in detail  # tag:write
    detail = await followed(
        operator,
        await submit(operator, f"/streams/{stream['id']}", f"/streams/{stream['id']}/tags", {"tags": "b"}),
        f"/streams/{stream['id']}",
    )
    assert flash_of(detail) == ("success", f"The tags of {stream['name']} were saved.")
    tagged = (await env.client.get(f"/api/stream/{stream['id']}", headers=org.api_headers)).json()
    assert tagged["tags"] == ["b"]


async def test_streams_list_pages_by_keyset(
    env: Env, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamward.dashboard.stream_pages as stream_pages

    monkeypatch.setattr(stream_pages, "DEFAULT_LIMIT", 2)
    org = await env.org()
    names = [(await create_stream(env, org, tags=["paged"]))["name"] for _ in range(3)]
    await create_stream(env, org, tags=["other"])
    admin = await sign_in(await env.member(org, "nanoAdmin", token=False))
    first = assert_page(await admin.get("/streams?tag=paged"))
    assert names[2] in first and names[1] in first and names[0] not in first
    older = re.search(r'href="([^"]+)">Older streams', first)
    assert older
    next_url = html.unescape(older.group(1))
    assert "tag=paged" in next_url and "cursor=" in next_url
    second = assert_page(await admin.get(next_url))
    assert names[0] in second and names[1] not in second
    assert "Older streams" not in second and 'href="/streams?tag=paged">Newest' in second


# --- roles ----------------------------------------------------------------------------------------


async def test_roles_create_edit_and_delete_with_reassignment(env: Env, sign_in: SignIn) -> None:
    org = await env.org()
    admin = await sign_in(await env.member(org, "nanoAdmin", token=False))
    listed = assert_page(await admin.get("/roles"))
    for title in ("Administrator", "Operator", "Observer"):
        assert title in listed
    assert "/roles/nanoAdmin/edit" not in listed  # predefined roles are fixed

    form = assert_page(await admin.get("/roles/new"))
    resources = list(dict.fromkeys(p.name.split(":")[0] for p in CATALOGUE))
    assert re.findall(r"<legend>(\w+)</legend>", form) == resources
    assert form.count('type="checkbox" name="permission"') == len(CATALOGUE)
    page = await admin.get("/roles/new")
    response = await admin.post(
        "/roles",
        data={
            "csrf_token": csrf_of(page.text),
            "name": "streamOps",
            "description": "Runs streams",
            "permission": ["stream:read", "stream:create", "org:read"],
        },
    )
    row = await role_row(env, org, "streamOps")
    assert row is not None and row.permissions == ["org:read", "stream:read", "stream:create"]
    listed = await followed(admin, response, "/roles")
    assert flash_of(listed) == (
        "success",
        "The role streamOps was created. Invite users with it, or give it to members on their user page.",
    )
    assert 'href="/organisation/users?role=streamOps"' not in listed  # no member yet

    holder = await env.member(org, "streamOps", token=False)
    listed = assert_page(await admin.get("/roles"))
    assert 'href="/organisation/users?role=streamOps">1<span' in listed  # one member

    edit = assert_page(await admin.get("/roles/streamOps/edit"))
    assert "Runs streams" in edit
    assert 'value="stream:create" checked' in edit and 'value="tag:read" checked' not in edit
    assert "1 member holds this role" in edit
    page = await admin.get("/roles/streamOps/edit")
    response = await admin.post(
        "/roles/streamOps/edit",
        data={
            "csrf_token": csrf_of(page.text),
            "description": "Runs streams and reads tags",
            "permission": ["stream:read", "tag:read", "org:read"],
        },
    )
    updated = await followed(admin, response, "/roles")
    assert flash_of(updated) == (
        "success",
        "The role streamOps was saved. Its members have the new permissions from their next request on.",
    )
    row = await role_row(env, org, "streamOps")
    assert row is not None and row.permissions == ["org:read", "stream:read", "tag:read"]
    assert row.description == "Runs streams and reads tags"

    listed = assert_page(await admin.get("/roles"))
    assert 'action="/roles/streamOps/delete"' in listed
    assert 'name="reassign_to" required' in listed
    # Without a target the service refuses (members hold the role): the list says so.
    refused = await submit(admin, "/roles", "/roles/streamOps/delete", {"reassign_to": ""})
    assert flash_of(await followed(admin, refused, "/roles")) == (
        "danger",
        "Nothing was changed. Members hold this role: choose the role to move them to.",
    )
    assert await role_row(env, org, "streamOps") is not None
    assert await role_of(env, holder.id) == "streamOps"

    response = await submit(admin, "/roles", "/roles/streamOps/delete", {"reassign_to": "nanoReadOnly"})
    deleted = await followed(admin, response, "/roles")
    assert flash_of(deleted) == ("success", "The role streamOps was deleted.")
    assert await role_row(env, org, "streamOps") is None
    assert await role_of(env, holder.id) == "nanoReadOnly"
    assert "streamOps" not in assert_page(await admin.get("/roles"))


async def test_role_forms_show_validation_and_conflicts(env: Env, sign_in: SignIn) -> None:
    org = await env.org()
    await custom_role(env, org, "taken", {"org:read"})
    admin = await sign_in(await env.member(org, "nanoAdmin", token=False))
    bad = await submit(admin, "/roles/new", "/roles", {"name": "1bad", "permission": "org:read"})
    text = assert_page(bad, 422)
    assert "Name: start with a letter" in text and 'value="1bad"' in text
    assert 'value="org:read" checked' in text  # the ticks survive the round trip
    reserved = await submit(admin, "/roles/new", "/roles", {"name": "nanoAdmin"})
    assert "predefined role" in assert_page(reserved, 409)
    duplicate = await submit(admin, "/roles/new", "/roles", {"name": "taken"})
    assert "already" in assert_page(duplicate, 409)
    unknown = await submit(admin, "/roles/new", "/roles", {"name": "odd", "permission": "made:up"})
    assert "not in the catalogue" in assert_page(unknown, 422)
    assert await role_row(env, org, "odd") is None
    assert_page(await admin.get("/roles/nanoUser/edit"), 409)
    assert_page(await admin.get("/roles/nothing/edit"), 404)
    # After a refused create the session still works (the refusal was rolled back cleanly).
    created = await followed(admin, await submit(admin, "/roles/new", "/roles", {"name": "fine"}), "/roles")
    kind, said = flash_of(created)
    assert kind == "success" and said.startswith("The role fine was created.")
    assert await role_row(env, org, "fine") is not None


async def test_a_role_manager_cannot_hand_out_what_they_lack(env: Env, sign_in: SignIn) -> None:
    org = await env.org()
    await custom_role(env, org, "roleManager", set(NANO_READ_ONLY.permissions) | {"role:manage"})
    await custom_role(env, org, "auditor", {"audit:read"})
    manager = await sign_in(await env.member(org, "roleManager", token=False))
    form = assert_page(await manager.get("/roles/new"))
    assert re.search(r'value="audit:read"\s+disabled', form)
    assert re.search(r'value="stream:read"\s+>', form)
    listed = assert_page(await manager.get("/roles"))
    assert 'action="/roles/auditor/delete"' not in listed and "/roles/auditor/edit" not in listed
    assert "Holds permissions you lack" in listed
    forged = await submit(manager, "/roles/new", "/roles", {"name": "auditor2", "permission": "audit:read"})
    assert "permissions you do not have" in assert_page(forged, 403)
    assert await role_row(env, org, "auditor2") is None


# --- audit log ------------------------------------------------------------------------------------


def action_cell(action: str) -> str:
    """How a row of the log names its action code (under the readable description)."""
    return f'<div class="small muted mono nowrap">{action}</div>'


async def test_audit_log_filters_pages_and_downloads_csv(
    env: Env, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = await env.org()
    admin_member = await env.member(org, "nanoAdmin", token=False)
    admin = await signed_in_through_form(env, admin_member)  # the sign-in is in the log too
    for tags in ("a", "b"):
        response = await submit(admin, "/streams/new", "/streams", {"tags": tags})
        assert response.status_code == 303 and response.headers["location"].startswith("/streams/")
        assert flash_of(await followed(admin, response, response.headers["location"]))[0] == "success"

    log = assert_page(await admin.get("/audit"))
    assert action_cell("stream.created") in log and action_cell("user.login") in log
    assert admin_member.email in log
    assert 'href="/audit/export.csv"' in log
    only = assert_page(await admin.get("/audit?action=stream.created"))
    assert only.count(action_cell("stream.created")) == 2 and action_cell("user.login") not in only
    assert 'href="/audit/export.csv?action=stream.created"' in only
    by_actor = assert_page(await admin.get(f"/audit?actor={admin_member.email}&target_type=stream"))
    assert by_actor.count(action_cell("stream.created")) == 2
    today = datetime.now(UTC).date()
    assert action_cell("stream.created") in assert_page(await admin.get(f"/audit?from={today}&to={today}"))
    yesterday = today - timedelta(days=1)
    assert "No entries match" in assert_page(await admin.get(f"/audit?to={yesterday}"))
    assert "YYYY-MM-DD" in assert_page(await admin.get("/audit?from=soon"), 400)

    monkeypatch.setattr("streamward.dashboard.audit_pages.DEFAULT_LIMIT", 1)
    first = assert_page(await admin.get("/audit?action=stream.created"))
    older = re.search(r'href="([^"]+)">Older entries', first)
    assert older and "action=stream.created" in html.unescape(older.group(1))
    second = assert_page(await admin.get(html.unescape(older.group(1))))
    assert second.count(action_cell("stream.created")) == 1 and "Older entries" not in second

    download = await admin.get("/audit/export.csv?action=stream.created")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == list(CSV_COLUMNS)
    assert [row[CSV_COLUMNS.index("action")] for row in rows[1:]] == ["stream.created"] * 2
    everything = list(csv.DictReader(io.StringIO((await admin.get("/audit/export.csv")).text)))
    assert {"stream.created", "user.login"} <= {row["action"] for row in everything}
    assert_page(await admin.get("/audit/export.csv?to=later"), 400)


# --- webhook deliveries ---------------------------------------------------------------------------


async def test_deliveries_list_filter_and_redeliver(env: Env, sign_in: SignIn) -> None:
    org = await env.org()
    admin = await sign_in(await env.member(org, "nanoAdmin", token=False))
    observer = await sign_in(await env.member(org, "nanoReadOnly", token=False))
    assert "No deliveries yet —" in assert_page(await admin.get("/webhook/deliveries"))  # no webhook set
    async with Receiver(lambda _request, n: Reply(500 if n == 1 else 204)) as receiver:
        await configure_webhook(env, org, receiver.url(), events=["user.invited"])
        event_id = await emit_event(env, org, "user.invited", {"email": "x@example.com"})
        await worker_for(env.runtime).drain()
        assert len(receiver.requests) == 1

        log = assert_page(await admin.get("/webhook/deliveries"))
        assert "user.invited" in log and str(event_id) in log
        assert '<span class="badge badge-danger">Failed</span>' in log and ">500<" in log
        assert "Redeliver" in log
        assert "Succeeded</span>" not in assert_page(await admin.get("/webhook/deliveries?status=succeeded"))
        assert "No deliveries match" in assert_page(
            await admin.get("/webhook/deliveries?event_type=stream.created")
        )
        seen = assert_page(await observer.get("/webhook/deliveries"))
        assert "user.invited" in seen and "/redeliver" not in seen  # no webhook:write

        delivery = re.search(r'action="/webhook/deliveries/([0-9a-f-]+)/redeliver"', log)
        assert delivery
        response = await submit(
            admin, "/webhook/deliveries", f"/webhook/deliveries/{delivery.group(1)}/redeliver"
        )
        done = await followed(admin, response, "/webhook/deliveries")
        assert flash_of(done) == (
            "success",
            "The event is queued for another attempt now, with the same event id.",
        )
        async with env.runtime.database.session(write=False) as session:
            assert (await session.get(OutboxEvent, event_id)).status == "pending"  # type: ignore[union-attr]
        await worker_for(env.runtime).drain()
        assert len(receiver.requests) == 2
    assert receiver.requests[1].headers["webhook-id"] == str(event_id)
    succeeded = assert_page(await admin.get("/webhook/deliveries?status=succeeded"))
    assert '<span class="badge badge-ok">Succeeded</span>' in succeeded and ">204<" in succeeded
    assert "Failed</span>" not in succeeded
    missing = await submit(admin, "/webhook/deliveries", f"/webhook/deliveries/{uuid.uuid4()}/redeliver")
    assert_page(missing, 404)
