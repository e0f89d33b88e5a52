"""What may have changed since a playback token was signed, read in one round trip on every verify:
whether its signing key was revoked or is gone, whether the token itself was revoked, and the stream
it is presented for. Nothing here is cached, so a revocation committed in any process is refused by
the very next verify in every process."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, exists, literal_column, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.db import LookupSource, lookup_reader
from streamward.lookup_pool import BatchedLookup
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
def _token_state(
    kid: ColumnElement[Any], jti: ColumnElement[Any], stream: ColumnElement[Any]
) -> Select[bool, bool, uuid.UUID, str, str | None]:
    return (
        select(
            PlaybackSigningKey.revoked_at.is_not(None).label("key_revoked"),
            exists().where(PlaybackRevocation.jti == jti).label("token_revoked"),
            Stream.organisation_id.label("stream_organisation_id"),
            Stream.state.label("stream_state"),
            Stream.group_id.label("stream_group_id"),
        )
        .select_from(PlaybackSigningKey)
        .outerjoin(Stream, Stream.name == stream)
        .where(PlaybackSigningKey.kid == kid)
    )


_TOKEN_STATE = _token_state(bindparam("kid"), bindparam("jti"), bindparam("stream"))


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


# The same look-up on the look-up pool (PostgreSQL), without SQLAlchemy's execution layer, which cost
# more than the query: every verify runs it. Shared by the verifies that ask while another is under
# way (lookup_pool), each of them still answered by a statement sent after it asked: the statement
# above, compiled once with the shared statement's key columns (``w.kid``...) in place of parameters.
_KEY = [("kid", "text"), ("jti", "text"), ("stream", "text")]
_RAW_TOKEN_STATE = BatchedLookup(
    _KEY,
    str(
        _token_state(*(literal_column(f"w.{name}") for name, _ in _KEY)).compile(
            dialect=postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
        )
    ),
)


async def _read_token_state(source: LookupSource, params: dict[str, Any]) -> Any:
    reader = await lookup_reader(source)
    if reader is not None:
        return await reader.one(_RAW_TOKEN_STATE, (params["kid"], params["jti"], params["stream"]))
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
