"""What may have changed since a playback token was signed, read in one round trip on every verify:
whether its signing key was revoked or is gone, whether the token itself was revoked, and the stream
it is presented for. Nothing here is cached, so a revocation committed in any process is refused by
the very next verify in every process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.db import LookupSource, lookup_reader
from streamward.playback.errors import (
    TOKEN_EXPIRED,
    SplayError,
    malformed,
)
from streamward.playback.keys import VerifyingKey
from streamward.playback.models import PlaybackRevocation, PlaybackSigningKey
from streamward.streams.models import Stream


def unknown_key() -> SplayError:
    return malformed("unknown_key", "The token was not signed by a key of this service.")


# What may have changed since the token was signed, in one round trip: whether its key was revoked
# (a rotation with revokeOld), whether the token itself was revoked (revocable tokens: jti, else
# NULL), and the stream it is presented for (NULL: none). No row: the key is gone (its organisation
# was deleted). Read on every verify, in every process: nothing here is cached, so a revocation
# committed anywhere is refused by the very next verify everywhere.
_TOKEN_STATE = (
    select(
        PlaybackSigningKey.revoked_at.is_not(None).label("key_revoked"),
        exists().where(PlaybackRevocation.jti == bindparam("jti")).label("token_revoked"),
        Stream.organisation_id.label("stream_organisation_id"),
        Stream.state.label("stream_state"),
        Stream.group_id.label("stream_group_id"),
    )
    .select_from(PlaybackSigningKey)
    .outerjoin(Stream, Stream.name == bindparam("stream"))
    .where(PlaybackSigningKey.kid == bindparam("kid"))
)


@dataclass(frozen=True)
class PresentedStream:
    """The stream a token is presented for, as far as the scope check needs it."""

    organisation_id: uuid.UUID
    state: str
    group_id: str | None


@dataclass(frozen=True)
class TokenState:
    token_revoked: bool
    stream: PresentedStream | None


# The same statement for asyncpg itself, and the order of its parameters: on PostgreSQL the state is
# read through the database's look-up pool without SQLAlchemy's execution layer, which costs more
# than the query (every verify runs it).
_RAW_TOKEN_STATE = _TOKEN_STATE.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]
_RAW_TOKEN_STATE_SQL = str(_RAW_TOKEN_STATE)
_RAW_TOKEN_STATE_PARAMETERS = tuple(_RAW_TOKEN_STATE.positiontup or ())


async def _read_token_state(source: LookupSource, params: dict[str, Any]) -> Any:
    reader = await lookup_reader(source)
    if reader is not None:
        return await reader.fetchrow(
            _RAW_TOKEN_STATE_SQL, *(params[name] for name in _RAW_TOKEN_STATE_PARAMETERS)
        )
    assert isinstance(source, AsyncSession)  # lookup_reader answers None only for a session
    return (await source.execute(_TOKEN_STATE, params)).mappings().one_or_none()


async def token_state(
    source: LookupSource, key: VerifyingKey, *, jti: str | None, stream: str | None
) -> TokenState:
    """Refuses a token whose key was revoked or is gone; otherwise what else the check needs."""
    row = await _read_token_state(source, {"kid": key.kid, "jti": jti, "stream": stream})
    if row is None:
        raise unknown_key()
    if row["key_revoked"]:
        raise SplayError(
            TOKEN_EXPIRED, "key_revoked", "The token's signing key was revoked.", status_code=403
        )
    presented = None
    if (stream_organisation_id := row["stream_organisation_id"]) is not None:
        presented = PresentedStream(stream_organisation_id, row["stream_state"], row["stream_group_id"])
    return TokenState(bool(row["token_revoked"]), presented)
