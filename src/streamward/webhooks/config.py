"""The organisation's webhook config: URL, subscribed management events, signing secret.

A URL is accepted only when it is http(s) and its host resolves to public addresses (the egress
guard, unless the operator allows private targets). The signing secret (``whsec_`` + base64 of 32
random bytes, the Standard Webhooks form) is created with the first URL and shown only then and on
rotation; it is stored sealed. Saving a URL re-enables a webhook the worker disabled after a 410.

The URL's host is resolved before anything is written, outside any transaction: a slow DNS server
must not hold the database's write lock (SQLite) or a connection (PostgreSQL).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import record_change
from streamward.authz.principal import Principal
from streamward.crypto import SecretBox
from streamward.db import end_transaction
from streamward.egress.guard import Resolver, check_webhook_url
from streamward.errors import BadRequest
from streamward.events.catalogue import SUBSCRIBABLE, EventType
from streamward.orgs.models import Organisation, organisation_of
from streamward.schemas import ColumnText
from streamward.webhooks.deliveries import WebhookNotConfigured
from streamward.webhooks.delivery import WEBHOOK_SECRET_PURPOSE
from streamward.webhooks.signing import SECRET_PREFIX

SECRET_BYTES = 32

# Management events an organisation may subscribe its webhook to (stream events from media servers
# are always sent): the catalogue's subscribable events, in its order.
SUBSCRIBABLE_EVENTS: tuple[str, ...] = tuple(event.value for event in SUBSCRIBABLE)


class UnknownEvent(BadRequest):
    code = "unknown_event"


@dataclass(frozen=True)
class WebhookConfig:
    url: str | None
    events: list[str]
    has_secret: bool
    disabled_at: datetime | None


def config_of(organisation: Organisation) -> WebhookConfig:
    return WebhookConfig(
        url=organisation.webhook_url,
        events=list(organisation.webhook_events or []),
        has_secret=organisation.webhook_secret_sealed is not None,
        disabled_at=organisation.webhook_disabled_at,
    )


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def _check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(SUBSCRIBABLE_EVENTS))
    if unknown:
        raise UnknownEvent(
            f"Unknown events: {', '.join(unknown)}.",
            details={"unknown": unknown, "known": list(SUBSCRIBABLE_EVENTS)},
        )
    return sorted(set(events))


def _snapshot(organisation: Organisation) -> dict[str, Any]:
    # Never the secret: only whether there is one.
    return {
        "url": organisation.webhook_url,
        "events": list(organisation.webhook_events or []),
        "hasSecret": organisation.webhook_secret_sealed is not None,
    }


def _changed(session: AsyncSession, principal: Principal, action: str, before: dict[str, Any]) -> None:
    organisation = organisation_of(principal)
    record_change(
        session,
        principal,
        action,
        organisation_id=organisation.id,
        target_type="organisation",
        target_id=organisation.id,
        event=EventType.ORGANISATION_UPDATED,
        payload=EventType.ORGANISATION_UPDATED.payload(id=str(organisation.id), changed=["webhook"]),
        before=before,
        after=_snapshot(organisation),
    )


@dataclass(frozen=True)
class SavedWebhook:
    config: WebhookConfig
    new_secret: str | None  # only when this save created the secret


async def save(
    session: AsyncSession,
    box: SecretBox,
    principal: Principal,
    *,
    url: str,
    events: list[str] | None,
    allow_private: bool,
    resolver: Resolver,
) -> SavedWebhook:
    """Set the webhook URL (and, when given, the subscribed events)."""
    # The dashboard's form reaches here without the API's request model: the column rule holds anyway.
    url = ColumnText(Organisation.webhook_url).clean(url, field="webhook")
    subscribed = _check_events(events) if events is not None else None  # cheap checks before DNS
    await end_transaction(session)
    await check_webhook_url(url, allow_private=allow_private, resolver=resolver)
    # Read again, locked, in the write transaction: another save may have landed during the lookup
    # (and created the secret this one must then not replace).
    organisation = organisation_of(principal)
    await session.refresh(organisation, with_for_update={"key_share": True})
    before = _snapshot(organisation)
    organisation.webhook_url = url
    if subscribed is not None:
        organisation.webhook_events = subscribed
    organisation.webhook_disabled_at = None
    secret = None
    if organisation.webhook_secret_sealed is None:
        secret = new_secret()
        organisation.webhook_secret_sealed = box.seal(secret, purpose=WEBHOOK_SECRET_PURPOSE)
    _changed(session, principal, "webhook.updated", before)
    await session.flush()
    return SavedWebhook(config_of(organisation), secret)


async def rotate_secret(session: AsyncSession, box: SecretBox, principal: Principal) -> str:
    """A new signing secret, shown once; deliveries are signed with it from this transaction on."""
    organisation = organisation_of(principal)
    if not organisation.webhook_url:
        raise WebhookNotConfigured("Set a webhook first; its secret is created with it.")
    before = _snapshot(organisation)
    secret = new_secret()
    organisation.webhook_secret_sealed = box.seal(secret, purpose=WEBHOOK_SECRET_PURPOSE)
    _changed(session, principal, "webhook.secret_rotated", before)
    await session.flush()
    return secret


async def remove(session: AsyncSession, principal: Principal) -> None:
    """No webhook any more: URL, subscriptions and secret are dropped (a new URL gets a new secret)."""
    organisation = organisation_of(principal)
    if organisation.webhook_url is None and organisation.webhook_secret_sealed is None:
        return
    before = _snapshot(organisation)
    organisation.webhook_url = None
    organisation.webhook_events = []
    organisation.webhook_secret_sealed = None
    organisation.webhook_disabled_at = None
    _changed(session, principal, "webhook.deleted", before)
    await session.flush()
