"""The request's database session: one per request, one transaction, committed before the response.

Every route that touches the database declares what it does with it, ``@reads`` or ``@writes``,
next to its path; the HTTP method does not decide (a POST may only read, such as a playback-token
check; a GET may write, such as an audited key reveal). A reading request gets a session without
a write transaction (no ``BEGIN IMMEDIATE`` on SQLite, autocommit on PostgreSQL), a writing one the
single write transaction its changes commit in. A route that uses the session without declaring
is a programming error, and the route-table test fails on it before any request does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.db import LookupSource, release
from streamward.errors import AppError
from streamward.runtime import runtime_of

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


# Where a request's session lives while its route runs (``in_request_transaction`` puts the marker,
# the DbSession dependency the session itself).
_SESSION_KEY = "streamward.session"
_MANAGED_KEY = "streamward.session_managed"


async def request_session(request: Request) -> AsyncSession:
    """The request's one session, opened on first use in the mode its route declares."""
    session: AsyncSession | None = request.scope.get(_SESSION_KEY)
    if session is not None:
        return session
    endpoint = request.scope.get("endpoint")
    mode = declared_mode(endpoint)
    if mode is None:
        raise RuntimeError(f"{getattr(endpoint, '__qualname__', endpoint)} uses the session undeclared")
    if not request.scope.get(_MANAGED_KEY):
        raise RuntimeError("a route that uses the session must be declared on a streamward Router")
    session = runtime_of(request).database.session(write=mode == "write")
    request.scope[_SESSION_KEY] = session
    return session


async def lookup_source(request: Request) -> LookupSource:
    """Where a route's per-request look-ups run (credentials, a playback token's state): for a
    route that only reads, on PostgreSQL, the database's look-up pool, and no session is opened for
    them (opening and closing an unused one cost a tenth of a playback-token check); else the
    request's session."""
    if declared_mode(request.scope.get("endpoint")) == "read":
        pool = await runtime_of(request).database.lookups()
        if pool is not None:
            return pool
    return await request_session(request)


Handler = Callable[[Request], Awaitable[Response]]


async def in_request_transaction(request: Request, handler: Handler) -> Response:
    """Run a route's handler (its dependencies, the endpoint, the serialisation of its answer) and end
    the transaction of the session it used before the answer is sent: committed, or rolled back when
    it failed or answered with a refusal. A failed commit fails the request.

    This is the route class's job (``web.routing.Route``), not a generator dependency's: FastAPI
    runs the exit of such a dependency in a shielded task, which measured a tenth of the CPU of an
    authenticated read that never touched the session at all."""
    request.scope[_MANAGED_KEY] = True
    try:
        response = await handler(request)
    except AppError as error:
        # Some refusals must still leave a trace (a failed login's audit entry, say).
        await _end(request, commit=error.keep_changes)
        raise
    except BaseException:
        await _end(request, commit=False)
        raise
    # A page that answered with a refusal (rendered, not raised) writes nothing: the attempt may
    # have written before it was refused.
    refusal: AppError | None = getattr(request.state, REFUSAL_ATTRIBUTE, None)
    await _end(request, commit=refusal is None or refusal.keep_changes)
    return response


_BEFORE_COMMIT = "streamward.before_commit"


def before_commit(session: AsyncSession, work: Callable[[AsyncSession], Awaitable[None]]) -> None:
    """Have ``work`` run in the request's transaction right before it commits (dropped if it rolls
    back): bookkeeping that writes a row the request otherwise leaves alone (a session's last use)
    takes that row's lock last. Taken first, it was held while the request waited for other locks:
    a password reset holding the account and waiting to delete that session, while the request held
    the session and waited for the account, was a deadlock."""
    session.info.setdefault(_BEFORE_COMMIT, []).append(work)


async def _end(request: Request, *, commit: bool) -> None:
    session: AsyncSession | None = request.scope.pop(_SESSION_KEY, None)
    if session is None:
        return
    deferred: list[Callable[[AsyncSession], Awaitable[None]]] = session.info.pop(_BEFORE_COMMIT, [])
    if not session.in_transaction():
        await release(session)  # nothing to commit or roll back
        return
    # Shielded, as FastAPI shielded a dependency's exit: a request cancelled now (its client gone,
    # a shutdown) still ends its transaction and gives its connection back.
    with anyio.CancelScope(shield=True):
        try:
            if commit:
                for work in deferred:
                    await work(session)
                await session.commit()
            else:
                await session.rollback()
        finally:
            await release(session)


DbSession = Annotated[AsyncSession, Depends(request_session)]
# For a route whose only use of the database is look-ups (``db.lookup_reader`` runs them).
LookupDb = Annotated[LookupSource, Depends(lookup_source)]
