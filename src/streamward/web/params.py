"""Parameters many routes share, declared once: the process runtime, the client's address, and
the page size and cursor of every paginated list (also as a query model's fields, ``PageQuery``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import Field

from streamward.pagination import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT
from streamward.runtime import Runtime, client_address, get_runtime
from streamward.web.query import QueryModel

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def _client_address(request: Request) -> str:
    return client_address(request)


# The client's IP address as the ForwardedClient middleware decided it (peer or trusted proxy).
ClientAddress = Annotated[str, Depends(_client_address)]

LIMIT_DESCRIPTION = f"Page size, at most {MAX_LIMIT}."
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=LIMIT_DESCRIPTION)]
CURSOR_DESCRIPTION = "`nextCursor` of the previous page."
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description=CURSOR_DESCRIPTION)]


class PageQuery(QueryModel):
    """``Limit`` and ``Cursor`` as fields of a query model (``web.query``), for the hot lists."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=LIMIT_DESCRIPTION)
    cursor: str | None = Field(None, max_length=MAX_CURSOR_LENGTH, description=CURSOR_DESCRIPTION)


__all__ = [
    "CURSOR_DESCRIPTION",
    "DEFAULT_LIMIT",
    "ClientAddress",
    "Cursor",
    "Limit",
    "PageQuery",
    "RuntimeDep",
]
