"""Stream events reported by media servers (DOMAIN.md "Custom webhook").

``publish`` is blocking: the organisation's webhook is asked, synchronously and signed, with the
documented form body; a 2xx lets the stream go live, anything else (or no answer within the
publish timeout) rejects it. No webhook configured: allowed. The webhook is called *outside* any
write transaction — a slow receiver must not hold a database lock — and the state change is then
applied in the request's own short transaction, re-checked under the row lock.

``update_publish`` and ``publish_done`` go to the webhook through the outbox (asynchronously).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.models import AuditEntry
from streamward.audit.service import Actor, record
from streamward.config import Settings
from streamward.crypto import SecretBox
from streamward.db import Database, utcnow
from streamward.egress.client import EgressClient
from streamward.errors import AppError, BadRequest
from streamward.events.catalogue import EventType
from streamward.events.outbox import emit
from streamward.orgs.models import Organisation
from streamward.orgs.packages import has_package
from streamward.schemas import column_length
from streamward.streams.lifecycle import StreamAction, StreamStateConflict, apply_action
from streamward.streams.models import Stream, StreamState
from streamward.streams.service import find_by_name
from streamward.vod.service import create_recording
from streamward.webhooks.delivery import load_target, send_signed
from streamward.webhooks.outcome import outcome_of

Call = Literal["publish", "update_publish", "publish_done"]
# Fields the media server may send, per DOMAIN.md; anything else is dropped, not forwarded.
FORWARDED_FIELDS: dict[str, tuple[str, ...]] = {
    "publish": ("call", "name", "app", "addr", "clientid"),
    "update_publish": ("call", "name", "app", "addr", "clientid", "time", "timestamp"),
    "publish_done": ("call", "name", "app", "addr", "clientid", "bytes_in", "bytes_out"),
}
# Fields that go into a column are as long as the column (the stream name is looked up, the address
# is the audit entry's client address); the others are only forwarded to the webhook.
MAX_FIELD_LENGTH = 256
FIELD_LENGTHS = {"name": column_length(Stream.name), "addr": column_length(AuditEntry.client_address)}


class PublishRejected(AppError):
    """The media server is told no (403); the audit entry of the refusal is kept."""

    status_code = 403
    code = "publish_rejected"
    keep_changes = True


@dataclass(frozen=True)
class IngestReport:
    call: Call
    fields: dict[str, str]

    @property
    def stream_name(self) -> str:
        return self.fields.get("name", "")

    @classmethod
    def of(cls, call: Call, raw: dict[str, str]) -> IngestReport:
        """The documented fields of ``call``; one longer than its limit is refused (400), not cut:
        a cut name would look up another stream, a cut address would misreport the source."""
        fields = {k: str(raw[k]) for k in FORWARDED_FIELDS[call] if raw.get(k) not in (None, "")}
        for name, value in fields.items():
            limit = FIELD_LENGTHS.get(name, MAX_FIELD_LENGTH)
            if len(value) > limit:
                raise BadRequest(
                    f"'{name}' has more than {limit} characters.",
                    code="validation_error",
                    details={"field": name, "problem": f"at most {limit} characters"},
                )
        fields["call"] = call
        return cls(call, fields)


def media_server(report: IngestReport) -> Actor:
    return Actor("mediaserver", client_address=report.fields.get("addr"))


async def _stream_or_reject(session: AsyncSession, report: IngestReport) -> Stream:
    stream = await find_by_name(session, report.stream_name, for_update=True) if report.stream_name else None
    if stream is None:
        raise PublishRejected("Unknown stream.", code="unknown_stream")
    return stream


async def ask_webhook(
    database: Database, box: SecretBox, client: EgressClient, report: IngestReport, timeout_seconds: float
) -> tuple[bool, str]:
    """Ask the stream's organisation whether it may go live. Returns (allowed, why)."""
    async with database.session(write=False) as reader:
        stream = await find_by_name(reader, report.stream_name) if report.stream_name else None
        if stream is None:
            return False, "unknown stream"
        if stream.state in (StreamState.LOCKED, StreamState.DELETED):
            return False, f"stream is {stream.state}"
        target = await load_target(reader, box, stream.organisation_id)
    if target is None:
        return True, "no webhook configured"
    body = urlencode(report.fields).encode()
    result = await send_signed(
        client,
        target,
        message_id=f"publish_{uuid.uuid4().hex}",
        body=body,
        content_type="application/x-www-form-urlencoded",
        timeout_seconds=timeout_seconds,
    )
    outcome = outcome_of(result)
    if outcome.response_code is None:
        return False, outcome.reason
    return outcome.delivered, f"webhook answered {outcome.response_code}"


async def publish(session: AsyncSession, report: IngestReport, *, allowed: bool, why: str) -> Stream:
    stream = await _stream_or_reject(session, report)
    if not allowed:
        record(
            session,
            media_server(report),
            "stream.publish_rejected",
            organisation_id=stream.organisation_id,
            target_type="stream",
            target_id=stream.id,
            after={"reason": why, "clientid": report.fields.get("clientid")},
        )
        raise PublishRejected(f"Publishing refused: {why}.")
    try:
        return await apply_action(session, stream, StreamAction.PUBLISH, actor=media_server(report))
    except StreamStateConflict as conflict:
        # Locked or deleted since the webhook was asked, or already live: the answer is still no.
        raise PublishRejected(f"Publishing refused: {conflict.message}") from None


async def update_publish(session: AsyncSession, report: IngestReport) -> Stream:
    stream = await _stream_or_reject(session, report)
    emit(
        session,
        EventType.MEDIA_UPDATE_PUBLISH,
        EventType.MEDIA_UPDATE_PUBLISH.payload(fields=report.fields),
        organisation_id=stream.organisation_id,
    )
    return stream


async def publish_done(session: AsyncSession, settings: Settings, report: IngestReport) -> Stream:
    stream = await _stream_or_reject(session, report)
    live_since: datetime = stream.updated_at
    if stream.state == StreamState.LIVE:
        await apply_action(session, stream, StreamAction.PUBLISH_DONE, actor=media_server(report))
    emit(
        session,
        EventType.MEDIA_PUBLISH_DONE,
        EventType.MEDIA_PUBLISH_DONE.payload(fields=report.fields),
        organisation_id=stream.organisation_id,
    )
    organisation = await session.get(Organisation, stream.organisation_id)
    if organisation is not None and has_package(organisation.packages, "live_processing.recording"):
        ended = utcnow()
        await create_recording(
            session,
            organisation,
            stream,
            title=f"{stream.name} {ended:%Y-%m-%d %H:%M} UTC",
            duration_seconds=round(max(0.0, (ended - live_since).total_seconds()), 3),
            url=f"{settings.playout_base_url}/{stream.name}/recordings/{int(time.time())}.mp4",
            actor=media_server(report),
        )
    return stream
