"""Parameters many routes share, declared once: the process runtime, the client's address, and
the page size and cursor of every paginated list (also for a query model's fields)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import Field

from streamward.pagination import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT
from streamward.runtime import Runtime, client_address, get_runtime

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def _client_address(request: Request) -> str:
    return client_address(request)


# The client's IP address as the ForwardedClient middleware decided it (peer or trusted proxy).
ClientAddress = Annotated[str, Depends(_client_address)]

LIMIT_DESCRIPTION = f"Page size, at most {MAX_LIMIT}."
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=LIMIT_DESCRIPTION)]
CURSOR_DESCRIPTION = "`nextCursor` of the previous page."
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description=CURSOR_DESCRIPTION)]
# The same two as the fields of a query model (``web.query``), declared where the model lists them
# (the order of its fields is the order of its parameters and of its refusals).
PageLimit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description=LIMIT_DESCRIPTION)]
PageCursor = Annotated[str | None, Field(max_length=MAX_CURSOR_LENGTH, description=CURSOR_DESCRIPTION)]


__all__ = [
    "DEFAULT_LIMIT",
    "ClientAddress",
    "Cursor",
    "Limit",
    "PageCursor",
    "PageLimit",
    "RuntimeDep",
]
