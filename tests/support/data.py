"""Records the tests start from, and readers of what the app wrote.

Factories act through the API where that is cheap and write straight to the database where the API
has no way (a stream going live is the media server's business, an invitation's token is shown once).
Members come from ``env.member`` (conftest), which issues their bintu tokens without a login.

The readers filter by keyword, one column each (a tuple, list or set means "any of"), plus ``org=``
for the organisation; an SQL clause may be passed where equality is not enough.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select

from streamward.audit.models import AuditEntry
from streamward.authn.models import PasswordReset
from streamward.crypto import digest, new_token
from streamward.db import utcnow
from streamward.egress.guard import system_resolver
from streamward.events.models import OutboxEvent, WebhookDelivery
from streamward.events.outbox import emit
from streamward.invites.models import Invitation
from streamward.orgs.models import Organisation
from streamward.orgs.packages import PACKAGE_KEYS
from streamward.roles.models import CustomRole
from streamward.streams.models import Stream
from streamward.users.models import Membership
from streamward.webhooks.delivery import WEBHOOK_SECRET_PURPOSE
from tests.conftest import CreatedOrg, Env, Member

ALL_PACKAGES = sorted(PACKAGE_KEYS)

# --- DNS ------------------------------------------------------------------------------------------

# A stand-in for DNS: names used by the tests, and what they "resolve" to.
FAKE_DNS: dict[str, list[str]] = {
    "hooks.example.com": ["93.184.216.34"],
    "other-hooks.example.com": ["93.184.216.35"],
    "intranet.example.com": ["10.1.2.3"],
    "metadata.example.com": ["169.254.169.254"],
    "mixed.example.com": ["93.184.216.34", "127.0.0.1"],
    "v6-loopback.example.com": ["::1"],
}
# Hosts the C library parses as IPv4 numbers (2130706433, 0177.0.0.1, 0x7f.1): resolving them sends
# no DNS query, so the real resolver decides them, exactly as in production.
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE)


async def fake_resolver(host: str, port: int) -> list[str]:
    if host in FAKE_DNS:
        return FAKE_DNS[host]
    if _NUMERIC_HOST.fullmatch(host):
        return await system_resolver(host, port)
    raise OSError(f"{host}: no such host (test resolver)")


def use_fake_dns(env: Env) -> None:
    env.runtime.webhook_resolver = fake_resolver


# --- the media server ---------------------------------------------------------------------------

INGEST_SECRET = "ingest-secret-for-tests-0123456789"


def publish_form(name: str, call: str = "publish", **extra: str) -> dict[str, str]:
    """The form a media server posts to the ingest callbacks."""
    return {"call": call, "name": name, "app": "live", "addr": "198.51.100.20", "clientid": "42", **extra}


# --- factories ------------------------------------------------------------------------------------


async def custom_role(
    env: Env, org: CreatedOrg, name: str, permissions: Iterable[str], description: str = ""
) -> None:
    async with env.runtime.database.session() as session:
        session.add(
            CustomRole(
                organisation_id=org.id, name=name, description=description, permissions=sorted(permissions)
            )
        )
        await session.commit()


async def invitation(
    env: Env,
    org: CreatedOrg,
    role: str = "nanoUser",
    *,
    email: str | None = None,
    expires_in: timedelta = timedelta(days=7),
    **state: Any,
) -> tuple[Invitation, str]:
    """An invitation and its token; ``state`` may set accepted_at / revoked_at."""
    token = new_token("swi")
    async with env.runtime.database.session() as session:
        invite = Invitation(
            organisation_id=org.id,
            token_hash=digest(token),
            role=role,
            email=email,
            created_by="system",
            expires_at=utcnow() + expires_in,
            **state,
        )
        session.add(invite)
        await session.commit()
    return invite, token


async def create_stream(env: Env, org: CreatedOrg, **body: Any) -> dict[str, Any]:
    response = await env.client.post("/api/stream", json=body, headers=org.api_headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def set_state(env: Env, stream_id: str, state: str, *, before_lock: str | None = None) -> None:
    """Put a stream in a state directly (going live is reported by media servers, not this API)."""
    async with env.runtime.database.session() as session:
        stream = await session.get(Stream, uuid.UUID(stream_id))
        assert stream is not None
        stream.state = state
        stream.state_before_lock = before_lock
        await session.commit()


async def import_vod(env: Env, org: CreatedOrg, **body: Any) -> dict[str, Any]:
    payload = {
        "title": "Keynote",
        "durationSeconds": 61.5,
        "url": "https://cdn.example.com/keynote.mp4",
    } | body
    response = await env.client.post("/api/vod", json=payload, headers=org.api_headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def playback_token(env: Env, org: CreatedOrg, **body: Any) -> str:
    response = await env.client.post(
        "/api/v1/splay", json=body or {"orgawide": True}, headers=org.api_headers
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["data"]["token"]
    return token


async def configure_webhook(env: Env, org: CreatedOrg, url: str, events: list[str] | None = None) -> str:
    """Point the organisation's webhook at ``url`` directly (the API would refuse loopback targets
    unless the setting allows them) and return its signing secret."""
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    async with env.runtime.database.session() as session:
        organisation = await session.get(Organisation, org.id)
        assert organisation is not None
        organisation.webhook_url = url
        organisation.webhook_events = events or []
        organisation.webhook_secret_sealed = env.runtime.secret_box.seal(
            secret, purpose=WEBHOOK_SECRET_PURPOSE
        )
        organisation.webhook_disabled_at = None
        await session.commit()
    return secret


async def emit_event(
    env: Env, org: CreatedOrg, type: str = "user.invited", payload: dict[str, Any] | None = None
) -> uuid.UUID:
    async with env.runtime.database.session() as session:
        event = emit(session, type, payload or {"n": 1}, organisation_id=org.id)
        await session.commit()
    return event.id


# --- readers --------------------------------------------------------------------------------------


def _filtered(
    statement: Select[Any], model: Any, where: tuple[ColumnElement[bool], ...], equal: dict[str, Any]
) -> Select[Any]:
    statement = statement.where(*where)
    for name, value in equal.items():
        column = getattr(model, name)
        if isinstance(value, tuple | list | set | frozenset):
            statement = statement.where(column.in_(list(value)))
        else:
            statement = statement.where(column == value)
    return statement


def _of(org: CreatedOrg | None, equal: dict[str, Any]) -> dict[str, Any]:
    return equal if org is None else equal | {"organisation_id": org.id}


async def count(env: Env, model: Any, *where: ColumnElement[bool], **equal: Any) -> int:
    """Rows of ``model`` matching every condition."""
    async with env.runtime.database.session(write=False) as session:
        statement = _filtered(select(func.count()).select_from(model), model, where, equal)
        return int(await session.scalar(statement) or 0)


async def audit_entries(
    env: Env, *where: ColumnElement[bool], org: CreatedOrg | None = None, **equal: Any
) -> list[AuditEntry]:
    """Audit entries in the order they were written, e.g. ``audit_entries(env, org=org, action="x")``."""
    async with env.runtime.database.session(write=False) as session:
        statement = _filtered(select(AuditEntry), AuditEntry, where, _of(org, equal))
        return list((await session.execute(statement.order_by(AuditEntry.id))).scalars())


async def events(
    env: Env, *where: ColumnElement[bool], org: CreatedOrg | None = None, **equal: Any
) -> list[OutboxEvent]:
    """Outbox events in the order they were emitted, e.g. ``events(env, org=org, type="x")``."""
    async with env.runtime.database.session(write=False) as session:
        statement = _filtered(select(OutboxEvent), OutboxEvent, where, _of(org, equal))
        return list((await session.execute(statement.order_by(OutboxEvent.id))).scalars())


async def event_row(env: Env, event_id: uuid.UUID) -> OutboxEvent:
    """One outbox event, as it is now."""
    async with env.runtime.database.session(write=False) as session:
        return (await session.execute(select(OutboxEvent).where(OutboxEvent.id == event_id))).scalar_one()


async def role_of(env: Env, membership_id: uuid.UUID) -> str | None:
    async with env.runtime.database.session(write=False) as session:
        return await session.scalar(select(Membership.role).where(Membership.id == membership_id))


async def password_reset(env: Env, member: Member, *, expires_in: timedelta = timedelta(hours=1)) -> str:
    """A password-reset link's token for the member's account (what the reset mail carries)."""
    token = new_token("swr")
    async with env.runtime.database.session() as session:
        session.add(
            PasswordReset(
                account_id=member.account.id, token_hash=digest(token), expires_at=utcnow() + expires_in
            )
        )
        await session.commit()
    return token


async def audit_entry_about(env: Env, org: CreatedOrg, target_type: str, target_id: object) -> None:
    """An entry in the organisation's audit log about one object, written as the system."""
    async with env.runtime.database.session() as session:
        session.add(
            AuditEntry(
                organisation_id=org.id,
                actor="system",
                action="test.seeded",
                target_type=target_type,
                target_id=str(target_id),
            )
        )
        await session.commit()


async def webhook_delivery(env: Env, org: CreatedOrg, url: str = "https://hooks.example.com/in") -> uuid.UUID:
    """One failed attempt in the organisation's delivery log, for an event of its own."""
    event_id = await emit_event(env, org)
    async with env.runtime.database.session() as session:
        delivery = WebhookDelivery(
            organisation_id=org.id,
            event_id=event_id,
            event_type="user.invited",
            attempt=1,
            status="failed",
            response_code=500,
            url=url,
        )
        session.add(delivery)
        await session.commit()
    return delivery.id
