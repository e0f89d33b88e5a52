"""Factories for the organisation-overview tests (keys, webhook, VOD, streams, tags, playback).

They act through the API where that is cheap and write straight to the database where the API has
no way (a stream going live is the media server's business), and issue bintu tokens without a login.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from streamward.audit.models import AuditEntry
from streamward.authn.service import issue_token
from streamward.authz.permissions import ADMIN_ROLE
from streamward.egress.guard import system_resolver
from streamward.events.models import OutboxEvent
from streamward.orgs.packages import PACKAGE_KEYS
from streamward.streams.models import Stream
from tests.conftest import CreatedOrg, Env, Member

ALL_PACKAGES = sorted(PACKAGE_KEYS)

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


async def member(env: Env, org: CreatedOrg, role: str = ADMIN_ROLE) -> Member:
    """A member with a bintu token issued directly (no login, no password hashing)."""
    created = await env.member(org, role, login=False)
    async with env.runtime.database.session() as session:
        issued = await issue_token(session, created.membership, timedelta(hours=1))
        await session.commit()
    created.token = issued.token
    return created


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


async def audit_entries(env: Env, org: CreatedOrg, action: str | None = None) -> list[AuditEntry]:
    async with env.runtime.database.session() as session:
        statement = select(AuditEntry).where(AuditEntry.organisation_id == org.id)
        if action is not None:
            statement = statement.where(AuditEntry.action == action)
        return list((await session.execute(statement.order_by(AuditEntry.id))).scalars())


async def events(env: Env, org: CreatedOrg, type_: str | None = None) -> list[OutboxEvent]:
    async with env.runtime.database.session() as session:
        statement = select(OutboxEvent).where(OutboxEvent.organisation_id == org.id)
        if type_ is not None:
            statement = statement.where(OutboxEvent.type == type_)
        return list((await session.execute(statement.order_by(OutboxEvent.id))).scalars())


async def count(env: Env, model: Any, **where: Any) -> int:
    async with env.runtime.database.session() as session:
        statement = select(func.count()).select_from(model)
        for name, value in where.items():
            statement = statement.where(getattr(model, name) == value)
        return int(await session.scalar(statement) or 0)
