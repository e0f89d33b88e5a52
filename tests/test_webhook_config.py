"""Webhook config: URL checks against the egress guard, the signing secret shown once and stored
sealed, subscriptions, rotation and removal."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import streamward
from streamward.events.catalogue import EventType
from streamward.orgs.models import Organisation
from streamward.webhooks.config import SUBSCRIBABLE_EVENTS
from streamward.webhooks.delivery import FORM_EVENT_TYPES, TEST_EVENT_TYPE
from streamward.webhooks.signing import secret_key
from tests.conftest import Env
from tests.support.data import audit_entries, events, use_fake_dns

WEBHOOK = "/api/organisation/webhook"

REFUSED_URLS = [
    "http://127.0.0.1/hook",  # loopback
    "http://localhost./hook",  # a name that does not resolve here (and would be loopback)
    "http://10.0.0.1/hook",  # RFC 1918
    "http://172.16.5.4/hook",
    "http://192.168.1.10:8080/hook",
    "http://intranet.example.com/hook",  # a name resolving to RFC 1918
    "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
    "http://metadata.example.com/",  # a name resolving to it
    "http://[fe80::1]/hook",
    "http://100.64.0.1/hook",  # CGNAT 100.64/10
    "http://100.127.255.254/hook",
    "http://[::1]/hook",
    "http://v6-loopback.example.com/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[::ffff:10.0.0.1]/hook",
    "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
    "http://2130706433/hook",  # 127.0.0.1 in decimal
    "http://0177.0.0.1/hook",  # octal
    "http://0x7f.0.0.1/hook",  # hexadecimal
    "http://127.1/hook",  # short form
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",  # multicast
    "http://mixed.example.com/hook",  # one public address and one loopback: refused
    "ftp://hooks.example.com/hook",  # not http(s)
    "file:///etc/passwd",
    "javascript:alert(1)",
    "gopher://hooks.example.com/",
    "https://user:pass@hooks.example.com/hook",  # credentials in the URL
    "https://hooks.example.com:99999/hook",  # no such port
    "https:///no-host",
    "https://does-not-resolve.example.com/hook",
]


async def test_refused_webhook_urls(env: Env) -> None:
    use_fake_dns(env)
    org = await env.org()
    for url in REFUSED_URLS:
        response = await env.client.put(WEBHOOK, json={"webhook": url}, headers=org.api_headers)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"]["code"] == "webhook_target_refused", url
    assert (await env.client.get(WEBHOOK, headers=org.api_headers)).json()["webhook"] is None
    assert await events(env, org=org) == []


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"allow_private_webhook_targets": getattr(request, "param", False)}


@pytest.mark.parametrize("settings_overrides", [True], indirect=True)
async def test_private_targets_when_the_operator_allows_them(env: Env) -> None:
    use_fake_dns(env)
    org = await env.org()
    for url in ("http://127.0.0.1:9000/hook", "http://intranet.example.com/hook"):
        response = await env.client.put(WEBHOOK, json={"webhook": url}, headers=org.api_headers)
        assert response.status_code == 200, response.text
    # Still http(s) only, and still no credentials in the URL.
    for url in ("ftp://127.0.0.1/", "http://u:p@127.0.0.1/"):
        assert (
            await env.client.put(WEBHOOK, json={"webhook": url}, headers=org.api_headers)
        ).status_code == 400


async def test_secret_is_returned_once_and_stored_sealed(env: Env) -> None:
    use_fake_dns(env)
    org = await env.org()
    admin = await env.member(org)
    first = await env.client.put(
        WEBHOOK,
        json={"webhook": "https://hooks.example.com/in", "events": ["stream.created", "user.deleted"]},
        headers=admin.headers,
    )
    assert first.status_code == 200, first.text
    body = first.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert secret_key(secret)  # the form the delivery worker signs with
    assert body["webhook"] == "https://hooks.example.com/in"
    assert (body["events"], body["hasSecret"], body["disabledAt"]) == (
        ["stream.created", "user.deleted"],
        True,
        None,
    )

    again = await env.client.put(
        WEBHOOK, json={"webhook": "https://other-hooks.example.com/in"}, headers=admin.headers
    )
    assert again.json()["secret"] is None  # only when created
    assert again.json()["events"] == ["stream.created", "user.deleted"]  # events omitted: unchanged

    observer = await env.member(org, "nanoReadOnly")
    read = (await env.client.get(WEBHOOK, headers=observer.headers)).json()
    assert read == {
        "webhook": "https://other-hooks.example.com/in",
        "events": ["stream.created", "user.deleted"],
        "hasSecret": True,
        "disabledAt": None,
    }
    async with env.runtime.database.session() as session:
        stored = await session.get(Organisation, org.id)
        assert (
            stored is not None and stored.webhook_secret_sealed and secret not in stored.webhook_secret_sealed
        )
    audit = await audit_entries(env, org=org, action="webhook.updated")
    assert len(audit) == 2 and secret not in json.dumps([[e.before, e.after] for e in audit])
    assert [e.payload for e in await events(env, org=org, type="organisation.updated")] == [
        {"id": str(org.id), "changed": ["webhook"]}
    ] * 2


async def test_rotate_secret_delete_and_reenable(env: Env) -> None:
    use_fake_dns(env)
    org = await env.org()
    none_yet = await env.client.post(
        f"{WEBHOOK}/secret/rotate", json={"confirm": True}, headers=org.api_headers
    )
    assert (none_yet.status_code, none_yet.json()["error"]["code"]) == (409, "webhook_not_configured")

    first = (
        await env.client.put(
            WEBHOOK, json={"webhook": "https://hooks.example.com/in"}, headers=org.api_headers
        )
    ).json()
    rotated = await env.client.post(
        f"{WEBHOOK}/secret/rotate", json={"confirm": True}, headers=org.api_headers
    )
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != first["secret"]

    # A webhook the delivery worker disabled (410 Gone) is re-enabled by saving it again.
    async with env.runtime.database.session() as session:
        await session.execute(
            update(Organisation)
            .where(Organisation.id == org.id)
            .values(webhook_disabled_at=Organisation.created_at)
        )
        await session.commit()
    assert (await env.client.get(WEBHOOK, headers=org.api_headers)).json()["disabledAt"] is not None
    saved = await env.client.put(
        WEBHOOK, json={"webhook": "https://hooks.example.com/in"}, headers=org.api_headers
    )
    assert saved.json()["disabledAt"] is None

    assert (await env.client.delete(WEBHOOK, headers=org.api_headers)).status_code == 204
    assert (await env.client.get(WEBHOOK, headers=org.api_headers)).json() == {
        "webhook": None,
        "events": [],
        "hasSecret": False,
        "disabledAt": None,
    }
    assert (await env.client.delete(WEBHOOK, headers=org.api_headers)).status_code == 204
    # A new URL gets a new secret.
    renewed = await env.client.put(
        WEBHOOK, json={"webhook": "https://hooks.example.com/in"}, headers=org.api_headers
    )
    assert renewed.json()["secret"] not in (None, first["secret"], rotated.json()["secret"])
    actions = [e.action for e in await audit_entries(env, org=org)]
    assert actions == [
        "webhook.updated",
        "webhook.secret_rotated",
        "webhook.updated",
        "webhook.deleted",
        "webhook.updated",
    ]


async def test_unknown_events_are_refused(env: Env) -> None:
    use_fake_dns(env)
    org = await env.org()
    response = await env.client.put(
        WEBHOOK,
        json={"webhook": "https://hooks.example.com/in", "events": ["stream.exploded"]},
        headers=org.api_headers,
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, "unknown_event")
    assert "stream.created" in response.json()["error"]["details"]["known"]


def test_every_management_event_the_code_emits_can_be_subscribed_to() -> None:
    """``emit`` takes an EventType, so every event the code can queue is in the catalogue; each is
    either subscribable, a media event (always sent) or the test event (sent on request), and the
    webhook settings offer exactly the subscribable ones."""
    source = "\n".join(p.read_text() for p in Path(streamward.__file__).parent.rglob("*.py"))
    emitted = set(re.findall(r"EventType\.([A-Z_]+)", source))
    assert emitted, "no EventType members used: is the pattern still right?"
    for name in emitted:
        event = EventType[name]
        assert event.subscribable or event.value in FORM_EVENT_TYPES | {TEST_EVENT_TYPE}, event
    assert set(SUBSCRIBABLE_EVENTS) == {e.value for e in EventType if e.subscribable}
    assert not re.search(r'emit\(\s*\w+,\s*"', source), "emit() takes an EventType, not a string"
