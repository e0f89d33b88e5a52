"""Restreaming: a stream's push URL, the target a media server forwards the broadcast to.

The target is checked like a webhook's (the egress guard's SSRF rule): rtmp(s), no credentials in
the authority, and every address its host resolves to public. Resolving is a network call, so it
happens before the write transaction, never inside it.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from streamward.audit.service import record_change
from streamward.authz.principal import Principal
from streamward.db import end_transaction, utcnow
from streamward.egress.guard import Resolver, UnsafeTarget, resolve_public
from streamward.errors import BadRequest
from streamward.events.catalogue import EventType
from streamward.streams.lifecycle import StreamEdit, check_edit
from streamward.streams.service import StreamView, get_stream
from streamward.streams.tags import tags_of


class PushUrlRefused(BadRequest):
    code = "push_url_refused"


PUSH_SCHEMES = {"rtmp": 1935, "rtmps": 443}
MAX_PUSH_URL_LENGTH = 2048


async def check_push_url(url: str, *, allow_private: bool, resolver: Resolver) -> str:
    """A restream target: rtmp(s), no credentials in the authority, and every address its host
    resolves to public (the webhook SSRF rule: Streamward's media side would connect there)."""
    if len(url) > MAX_PUSH_URL_LENGTH:
        raise PushUrlRefused(f"The push URL is longer than {MAX_PUSH_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise PushUrlRefused("The push URL cannot be parsed.") from None
    if parts.scheme not in PUSH_SCHEMES:
        raise PushUrlRefused("The push URL must be an rtmp:// or rtmps:// URL.")
    if not parts.hostname:
        raise PushUrlRefused("The push URL has no host.")
    if parts.username or parts.password:
        raise PushUrlRefused("Credentials before the host are not allowed in a push URL.")
    try:
        await resolve_public(
            parts.hostname,
            port or PUSH_SCHEMES[parts.scheme],
            allow_private=allow_private,
            resolver=resolver,
        )
    except UnsafeTarget as refused:
        raise PushUrlRefused(refused.message.replace("webhook", "push URL")) from None
    return url


async def set_push_url(
    session: AsyncSession,
    principal: Principal,
    stream_id: uuid.UUID | str,
    url: str | None,
    *,
    allow_private: bool,
    resolver: Resolver,
) -> StreamView:
    """Set (or, with None, remove) the stream's restream target. The audit entry names only the
    target's host: the rest of such a URL is often the target's stream key."""
    if url is not None:
        # Resolving the host is a network call: never inside the write transaction.
        await end_transaction(session)
        url = await check_push_url(url, allow_private=allow_private, resolver=resolver)
    stream = await get_stream(session, principal, stream_id, for_update=True)
    check_edit(stream, StreamEdit.PUSH_URL)
    if url != stream.push_url:
        record_change(
            session,
            principal,
            "stream.push_url_changed",
            organisation_id=principal.organisation_id,
            target_type="stream",
            target_id=stream.id,
            event=EventType.STREAM_UPDATED,
            payload=EventType.STREAM_UPDATED.payload(
                id=str(stream.id), name=stream.name, state=stream.state, change="push_url"
            ),
            before={"pushHost": _host(stream.push_url)},
            after={"pushHost": _host(url)},
        )
        stream.push_url = url
        stream.updated_at = utcnow()
        await session.flush()
    return StreamView(stream, (await tags_of(session, [stream.id]))[stream.id])


def _host(url: str | None) -> str | None:
    return urlsplit(url).hostname if url else None
