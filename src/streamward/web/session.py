"""The request's database session: one per request, one transaction, committed before the response.

Every route that touches the database declares what it does with it, ``@reads`` or ``@writes``,
next to its path; the HTTP method does not decide (a POST may only read, such as a playback-token
check; a GET may write, such as an audited key reveal). A reading request gets a session without
a write transaction (no ``BEGIN IMMEDIATE`` on SQLite, autocommit on PostgreSQL), a writing one the
single write transaction its changes commit in. A route that uses the session without declaring
is a programming error, and the route-table test fails on it before any request does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.errors import AppError
from streamward.runtime import Runtime

SessionMode = Literal["read", "write"]
SESSION_MODE_ATTRIBUTE = "streamward_session_mode"
REFUSAL_ATTRIBUTE = "streamward_refusal"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def reads(endpoint: Endpoint) -> Endpoint:
    """The route only reads: no write transaction, no write lock."""
    setattr(endpoint, SESSION_MODE_ATTRIBUTE, "read")
    return endpoint


def writes(endpoint: Endpoint) -> Endpoint:
    """The route changes state: one write transaction, committed before the response is sent."""
    setattr(endpoint, SESSION_MODE_ATTRIBUTE, "write")
    return endpoint


def note_refusal(request: Request, refusal: AppError) -> None:
    """The route answers with ``refusal`` without raising it (a dashboard page shows it in a
    form): the request's transaction is rolled back as if it had been raised, unless the refusal
    keeps its changes (a failed login's audit entry)."""
    setattr(request.state, REFUSAL_ATTRIBUTE, refusal)


def declared_mode(endpoint: Any) -> SessionMode | None:
    mode: SessionMode | None = getattr(endpoint, SESSION_MODE_ATTRIBUTE, None)
    return mode


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    endpoint = request.scope.get("endpoint")
    mode = declared_mode(endpoint)
    if mode is None:
        raise RuntimeError(f"{getattr(endpoint, '__qualname__', endpoint)} uses the session undeclared")
    runtime: Runtime = request.app.state.runtime
    async with runtime.database.session(write=mode == "write") as session:
        try:
            yield session
            refusal: AppError | None = getattr(request.state, REFUSAL_ATTRIBUTE, None)
            if refusal is not None and not refusal.keep_changes:
                # A page that answered with a refusal (rendered, not raised) writes nothing: the
                # attempt may have written before it was refused.
                await session.rollback()
            else:
                await session.commit()
        except AppError as error:
            # Some refusals must still leave a trace (a failed login's audit entry, say).
            await (session.commit() if error.keep_changes else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise


# scope="function": the commit runs before the response is sent; a failed commit becomes an error reply.
DbSession = Annotated[AsyncSession, Depends(_request_session, scope="function")]
