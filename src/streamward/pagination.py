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

from sqlalchemy import Select, bindparam
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


# The parameters of a page template (keyset_template): the rows read, and the id they come after.
_LIMIT_PARAMETER = "page_rows"
_AFTER_PARAMETER = "page_after"


def keyset_template(
    statement: Select[Any], id_column: InstrumentedAttribute[uuid.UUID], *, after_cursor: bool
) -> Select[Any]:
    """``keyset_page``'s query as a statement built once (``db.PreparedSelect``): the limit, and
    with ``after_cursor`` the cursor's id, are parameters that ``keyset_values`` gives."""
    if after_cursor:
        statement = statement.where(id_column < bindparam(_AFTER_PARAMETER))
    return statement.order_by(id_column.desc()).limit(bindparam(_LIMIT_PARAMETER))


def keyset_values(limit: int, cursor: str | None) -> dict[str, Any]:
    """The page parameters of a ``keyset_template`` made with ``after_cursor=bool(cursor)``. One row
    more than the page, to know whether another page follows."""
    values: dict[str, Any] = {_LIMIT_PARAMETER: limit + 1}
    if cursor:
        values[_AFTER_PARAMETER] = decode_cursor(cursor)
    return values


def keyset_rows(rows: Sequence[Any], limit: int, *, id_position: int = 0) -> Page[Any]:
    """The page a ``keyset_template``'s rows make; each row's id at ``id_position``."""
    page = rows[:limit]
    more = len(rows) > limit and bool(page)
    return Page(page, encode_cursor(page[-1][id_position]) if more else None)


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
