"""The Overview's one-time secrets, its feedback, and the audit log's readable rows, over HTTP.

Revealing the API key and rotating the webhook secret answer with a redirect (post/redirect/get):
the secret is on the page the redirect leads to, once, and never in a URL; a reload neither shows
it again nor repeats the POST. A failed *Send test event* says so in a danger callout. The audit
log names who did what to whom, with "field: before → after" lines.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

import streamward
from streamward.dashboard.audit_pages import ACTIONS, TARGET_TYPES
from tests.conftest import Env
from tests.support.data import audit_entries, configure_webhook
from tests.support.pages import csrf_of, flash_of, signed_in
from tests.support.receiver import Receiver, Reply

OVERVIEW = "/organisation/overview"
API_KEY_INPUT = re.compile(r'id="api-key" type="text" readonly value="([^"]+)"')
WEBHOOK_SECRET_INPUT = re.compile(r'id="webhook-secret" type="text" readonly value="([^"]+)"')


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"allow_private_webhook_targets": True}


async def post_from_overview(client: httpx.AsyncClient, action: str, **data: str) -> httpx.Response:
    page = await client.get(OVERVIEW)
    assert page.status_code == 200, page.text
    return await client.post(action, data={"csrf_token": csrf_of(page.text)} | data)


async def test_revealed_api_key_is_shown_once_after_a_redirect_and_never_in_a_url(env: Env) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin", token=False))

    revealed = await post_from_overview(admin, "/organisation/apikey/reveal")
    # Before: the POST's own response was the page with the key (a reload posted again).
    assert revealed.status_code == 303, revealed.text
    assert revealed.headers["location"] == OVERVIEW
    assert org.api_key not in revealed.text and org.api_key not in str(revealed.headers)

    shown = await admin.get(OVERVIEW)
    assert shown.status_code == 200
    assert API_KEY_INPUT.findall(shown.text) == [org.api_key]
    assert shown.headers["cache-control"] == "no-store"
    assert flash_of(shown.text)[0] == "success"
    assert org.api_key not in str(shown.url)

    # A reload: the key is hidden again, and nothing was revealed (or audited) a second time.
    reloaded = await admin.get(OVERVIEW)
    assert org.api_key not in reloaded.text
    assert 'action="/organisation/apikey/reveal"' in reloaded.text
    assert len(await audit_entries(env, org=org, action="apikey.revealed")) == 1


async def test_the_one_time_secret_stays_with_the_session_that_asked(env: Env) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin", token=False))
    other = await signed_in(env, await env.member(org, "nanoAdmin", token=False))
    revealed = await post_from_overview(admin, "/organisation/apikey/reveal")
    assert revealed.status_code == 303
    # The cookie that carries it, replayed by another signed-in browser, shows nothing.
    carried = {name: value for name, value in revealed.cookies.items() if name != "sw_session"}
    assert carried, "the redirect hands the secret over in a cookie"
    for name, value in carried.items():
        assert org.api_key not in value  # sealed, not in the clear
        other.cookies.set(name, value)
    assert org.api_key not in (await other.get(OVERVIEW)).text


async def test_rotating_the_webhook_secret_redirects_and_a_reload_does_not_rotate_again(env: Env) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin", token=False))
    await configure_webhook(env, org, "http://127.0.0.1:9/hook")
    page = (await admin.get(OVERVIEW)).text
    # The page asks first, in a danger dialog that says receivers must update their secret.
    dialog = re.search(r'<dialog id="rotate-secret-dialog".*?</dialog>', page, re.DOTALL)
    assert dialog and 'action="/organisation/webhook/secret/rotate"' in dialog.group(0)
    assert "notice-danger" in dialog.group(0) and "Receivers must update their secret" in dialog.group(0)
    assert 'data-dialog-open="rotate-secret-dialog"' in page

    rotated = await post_from_overview(admin, "/organisation/webhook/secret/rotate")
    assert rotated.status_code == 303, rotated.text
    assert rotated.headers["location"] == OVERVIEW and "whsec_" not in rotated.text
    shown = await admin.get(OVERVIEW)
    [secret] = WEBHOOK_SECRET_INPUT.findall(shown.text)
    assert secret.startswith("whsec_") and secret not in str(shown.url)
    reloaded = await admin.get(OVERVIEW)
    assert secret not in reloaded.text and not WEBHOOK_SECRET_INPUT.search(reloaded.text)
    assert len(await audit_entries(env, org=org, action="webhook.secret_rotated")) == 1


async def test_saving_a_first_webhook_shows_its_new_secret_after_a_redirect(env: Env) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin", token=False))
    saved = await post_from_overview(admin, "/organisation/webhook", url="http://127.0.0.1:9/hook")
    assert saved.status_code == 303 and saved.headers["location"] == OVERVIEW
    assert "whsec_" not in saved.text
    [secret] = WEBHOOK_SECRET_INPUT.findall((await admin.get(OVERVIEW)).text)
    assert secret.startswith("whsec_")
    assert not WEBHOOK_SECRET_INPUT.search((await admin.get(OVERVIEW)).text)


@pytest.mark.parametrize(
    ("status", "kind", "said"), [(500, "danger", "HTTP 500"), (204, "success", "HTTP 204")]
)
async def test_send_test_event_says_what_happened(env: Env, status: int, kind: str, said: str) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin", token=False))
    async with Receiver(lambda _request, _n: Reply(status)) as receiver:
        await configure_webhook(env, org, receiver.url())
        sent = await post_from_overview(admin, "/organisation/webhook/test")
    assert sent.status_code == 303 and sent.headers["location"] == OVERVIEW  # no ?done= to replay
    shown = (await admin.get(OVERVIEW)).text
    # Before: a failure showed in the green success banner.
    shown_kind, text = flash_of(shown)
    assert shown_kind == kind and said in text
    assert "data-flash" not in (await admin.get(OVERVIEW)).text  # said once


async def test_send_test_event_to_nobody_listening_is_a_danger_flash(env: Env) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin", token=False))
    async with Receiver() as receiver:
        url = receiver.url()
    await configure_webhook(env, org, url)  # the receiver has gone: connection refused
    await post_from_overview(admin, "/organisation/webhook/test")
    kind, text = flash_of((await admin.get(OVERVIEW)).text)
    assert kind == "danger" and "not delivered" in text and "no answer" in text


async def test_make_vod_public_asks_in_a_warning_dialog_and_private_does_not(env: Env) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin", token=False))
    page = (await admin.get(OVERVIEW)).text
    dialog = re.search(r'<dialog id="vod-public-dialog".*?</dialog>', page, re.DOTALL)
    assert dialog and "notice-warn" in dialog.group(0) and "without credentials" in dialog.group(0)
    # The page's own button only opens the dialog; the dialog's form is the one that posts.
    before_dialog = page[: page.index('<dialog id="vod-public-dialog"')]
    assert 'action="/organisation/vod"' not in before_dialog.split('id="vod-title"')[1]
    made = await post_from_overview(admin, "/organisation/vod", public="on")
    assert made.status_code == 303 and made.headers["location"] == OVERVIEW
    public = (await admin.get(OVERVIEW)).text
    assert flash_of(public)[0] == "warn"
    assert "vod-public-dialog" not in public and "Make VOD private" in public


async def test_api_access_warning_is_a_danger_callout_and_tags_link_to_streams(env: Env) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin", token=False))
    empty = (await admin.get(OVERVIEW)).text
    assert 'href="/streams"' in empty.split('id="tags-title"')[1]  # the empty state says where to go
    created = await env.client.post(
        "/api/stream", json={"tags": ["event:keynote", "a&b"]}, headers=org.api_headers
    )
    assert created.status_code == 200, created.text
    page = (await admin.get(OVERVIEW)).text
    api = page.split('id="api-title"')[1].split("</section>")[0]
    assert 'class="notice notice-danger' in api and "notice-warn" not in api
    tags = page.split('id="tags-title"')[1]
    assert 'href="/streams?tag=event%3Akeynote"' in tags and 'href="/streams?tag=a%26b"' in tags
    filtered = await admin.get("/streams?tag=a%26b")
    assert filtered.status_code == 200 and "a&amp;b" in filtered.text


# --- the audit log ----------------------------------------------------------------------------------


def _recorded_actions() -> set[str]:
    """Every action string the sources hand to the audit log (``record``, ``record_change`` and their
    wrappers, and the streams lifecycle's table of actions)."""
    found: set[str] = set()
    root = Path(streamward.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name in {
                    "record",
                    "record_change",
                    "record_for_account",
                    "record_settings_change",
                    "_changed",
                }:
                    for arg in node.args[1:3]:
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "." in arg.value:
                            found.add(arg.value)
            if isinstance(node, ast.Assign) and any(
                getattr(t, "id", "") == "_AUDIT_ACTIONS" for t in node.targets
            ):
                assert isinstance(node.value, ast.Dict)
                found |= {v.value for v in node.value.values if isinstance(v, ast.Constant)}
    return found


def test_the_action_filter_knows_every_recorded_action() -> None:
    recorded = _recorded_actions()
    assert len(recorded) > 30  # the scan found the services' calls
    assert recorded <= set(ACTIONS), sorted(recorded - set(ACTIONS))


async def test_audit_rows_say_who_did_what_to_whom_with_before_and_after(env: Env) -> None:
    org = await env.org()
    admin_member = await env.member(org, "nanoAdmin")
    target = await env.member(org, "nanoUser", token=False)
    changed = await env.client.put(
        "/api/user/permission",
        json={"userId": str(target.id), "role": "nanoAdmin"},
        headers=admin_member.headers,
    )
    assert changed.status_code == 200, changed.text
    stream = (await env.client.post("/api/stream", json={"tags": ["x"]}, headers=org.api_headers)).json()
    admin = await signed_in(env, admin_member)

    page = (await admin.get("/audit?action=user.role_changed")).text
    row = page.split("<tbody>")[1].split("</tr>")[0]
    assert admin_member.email in row and "changed the role of" in row
    visible = re.sub(r"<[^>]+>", " ", row)
    assert target.email in visible and str(target.id) not in visible  # the user's email, not their UUID
    assert 'role:</span> <span class="change-before">Operator (nanoUser)</span>' in row
    assert '<span class="change-after">Administrator (nanoAdmin)</span>' in row
    assert "{" not in row  # no raw JSON

    streams = (await admin.get("/audit?target_type=stream")).text
    assert stream["name"] in streams and "created the stream" in streams and "The API key" in streams

    # Action and target type are chosen from the catalogue, not typed.
    assert re.search(r'<select id="f-action" name="action">', page)
    assert '<option value="user.role_changed" selected>Role changed</option>' in page
    assert re.search(r'<select id="f-target-type" name="target_type">', page)
    assert all(f'<option value="{t}"' in page for t in TARGET_TYPES)


@pytest.fixture
def statements(env: Env) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    engine = env.runtime.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    yield seen
    event.remove(engine, "before_cursor_execute", count)


async def test_audit_targets_are_named_by_one_query_per_page_not_per_row(
    env: Env, statements: list[str]
) -> None:
    org = await env.org()
    admin_member = await env.member(org, "nanoAdmin")
    admin = await signed_in(env, admin_member)

    async def queries_for_page() -> int:
        statements.clear()
        page = await admin.get("/audit?target_type=stream")
        assert page.status_code == 200
        return len(statements)

    await env.client.post("/api/stream", json={}, headers=org.api_headers)
    few = await queries_for_page()
    for _ in range(6):
        await env.client.post("/api/stream", json={}, headers=org.api_headers)
    assert await queries_for_page() == few


async def test_audit_empty_and_unknown_filters(env: Env) -> None:
    org = await env.org()
    admin = await signed_in(env, await env.member(org, "nanoAdmin", token=False))
    none = (await admin.get("/audit?action=tag.deleted")).text
    assert "No entries match these filters." in none and 'href="/audit"' in none
    # A value from an older link that the catalogue lacks stays selected rather than vanishing.
    odd = (await admin.get("/audit?action=legacy.thing")).text
    assert '<option value="legacy.thing" selected>legacy.thing</option>' in odd
