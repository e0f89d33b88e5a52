"""Keyset pagination with opaque cursors.

Lists are ordered by primary key, newest first: ids are UUIDv7 (time-ordered), so "newest first" is
``ORDER BY id DESC`` and the next page is ``WHERE id < last_id``, an index range scan whatever the
depth, and stable while rows are inserted concurrently (new rows sort before the cursor).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from streamward.errors import BadRequest

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# An id cursor is 22 characters; a name cursor (tags) encodes the name: room for the longest.
MAX_CURSOR_LENGTH = 512


class InvalidCursor(BadRequest):
    code = "invalid_cursor"
    message = "The cursor is not one this list handed out."


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor() from None


def encode_cursor(last_id: uuid.UUID) -> str:
    return _encode(last_id.bytes)


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(bytes=_decode(cursor))
    except ValueError:
        raise InvalidCursor() from None


def encode_text_cursor(last_key: str) -> str:
    """For lists keyed by a name rather than an id (tags)."""
    return _encode(last_key.encode())


def decode_text_cursor(cursor: str) -> str:
    try:
        return _decode(cursor).decode()
    except UnicodeDecodeError:
        raise InvalidCursor() from None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


async def keyset_page(
    session: AsyncSession,
    statement: Select[Any],
    id_column: InstrumentedAttribute[uuid.UUID],
    *,
    limit: int,
    cursor: str | None,
    scalars: bool = True,
) -> Page[Any]:
    """One page of ``statement`` (already filtered and tenant-scoped), newest first.

    ``id_column`` must be the UUIDv7 key of the rows returned; with ``scalars=False`` rows are
    returned as tuples and the id is taken from the column of that name.
    """
    if cursor:
        statement = statement.where(id_column < decode_cursor(cursor))
    statement = statement.order_by(id_column.desc()).limit(limit + 1)
    result = await session.execute(statement)
    rows = list(result.scalars() if scalars else result.all())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        last_id = last.id if scalars else getattr(last, id_column.key)
        next_cursor = encode_cursor(last_id)
    return Page(rows, next_cursor)
