"""Parameters many routes share, declared once: the process runtime, the client's address, and
the page size and cursor of every paginated list."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from streamward.pagination import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT
from streamward.runtime import Runtime, client_address, get_runtime

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def _client_address(request: Request) -> str:
    return client_address(request)


# The client's IP address as the ForwardedClient middleware decided it (peer or trusted proxy).
ClientAddress = Annotated[str, Depends(_client_address)]

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}.")]
Cursor = Annotated[
    str | None, Query(max_length=MAX_CURSOR_LENGTH, description="`nextCursor` of the previous page.")
]

__all__ = ["DEFAULT_LIMIT", "ClientAddress", "Cursor", "Limit", "RuntimeDep"]
