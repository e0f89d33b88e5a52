"""Who is asking: the one way every surface (JSON API, token service, dashboard, player reads)
turns a credential into a Principal."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from streamward.authn.mfa.errors import EnrolmentRequired
from streamward.authn.principals import principal_from_api_key, principal_from_token, record_use
from streamward.authz.principal import Principal
from streamward.db import LookupSource, is_writing
from streamward.errors import BadRequest, Unauthenticated
from streamward.request_context import note_organisation
from streamward.runtime import Runtime, client_address, runtime_of
from streamward.web.session import before_commit, lookup_source

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-BINTU-TOKEN"
API_KEY_HEADER = "X-BINTU-APIKEY"
MAX_CREDENTIAL_LENGTH = 256


async def principal_for(
    request: Request,
    db: LookupSource,
    runtime: Runtime,
    *,
    token: str | None = None,
    api_key: str | None = None,
) -> Principal | None:
    """The Principal of a bintu token or of the API key (one database round trip), carrying the
    client's address for the audit log; None when the credential is not valid.

    ``db`` is the request's session, or the database's look-up pool (``web.session.lookup_source``). On a
    writing request the look-up runs in the request's session, so the Principal's organisation is
    attached to the transaction that may change it; on a reading one, on PostgreSQL, it runs on the
    look-up pool and no session checks out a connection for it."""
    credential = token or api_key
    if not credential or len(credential) > MAX_CREDENTIAL_LENGTH:
        return None
    address = client_address(request)  # for the audit log
    if token:
        use = await principal_from_token(db, token, client_address=address)
        if use is None:
            return None
        principal = use.principal
        if use.stale_since is not None and principal.session_id is not None:
            await _record_use(db, runtime, principal.session_id, use.stale_since)
    else:
        found = await principal_from_api_key(db, credential, client_address=address)
        if found is None:
            return None
        principal = found
    note_organisation(principal.organisation.id)  # for the request's log lines
    return principal


async def _record_use(db: LookupSource, runtime: Runtime, session_id: uuid.UUID, when: datetime) -> None:
    if isinstance(db, AsyncSession) and is_writing(db):
        # A writing request already has its write transaction (on SQLite it holds the database's
        # write lock from its first statement, so a second writer would wait out the busy timeout):
        # the use is written in it, last (see before_commit).
        before_commit(db, lambda session: record_use(session, session_id, when))
        return
    # A reading request must not turn into a writer for bookkeeping: a short write of its own.
    try:
        async with runtime.database.session(write=True) as writer:
            await record_use(writer, session_id, when)
            await writer.commit()
    except Exception:  # bookkeeping only; never fail the request for it
        log.warning("could not record session use", exc_info=True)


# Set on a function that finds the caller from the request alone (web.access builds its rules on it
# without a dependency of their own).
REQUEST_ONLY_ATTRIBUTE = "streamward_request_only"
# The request's Principal, once found: a route with two rules looks its credential up once.
_PRINCIPAL_KEY = "streamward.principal"


async def authenticate(request: Request) -> Principal:
    """The API's credentials: ``X-BINTU-TOKEN`` or ``X-BINTU-APIKEY`` (never both). A member whose
    organisation requires a second factor they have not set up is refused here, for every route but
    the few that declare ``ENROLMENT`` (``authenticate_for_enrolment``)."""
    principal = await authenticate_for_enrolment(request)
    if principal.enrolment_only:
        raise EnrolmentRequired()
    return principal


async def authenticate_for_enrolment(request: Request) -> Principal:
    """Like ``authenticate``, and a session limited to enrolment is accepted too."""
    known: Principal | None = request.scope.get(_PRINCIPAL_KEY)
    if known is not None:
        return known
    token = request.headers.get(TOKEN_HEADER)
    api_key = request.headers.get(API_KEY_HEADER)
    if token and api_key:
        raise BadRequest(
            f"Send either {TOKEN_HEADER} or {API_KEY_HEADER}, not both.", code="ambiguous_credentials"
        )
    if not (token or api_key):
        raise Unauthenticated(f"Send a bintu token ({TOKEN_HEADER}) or the API key ({API_KEY_HEADER}).")
    source = await lookup_source(request)
    principal = await principal_for(request, source, runtime_of(request), token=token, api_key=api_key)
    if principal is None:
        raise Unauthenticated()
    request.scope[_PRINCIPAL_KEY] = principal
    return principal


# Neither is a FastAPI dependency with parameters of its own: every such parameter cost a resolution
# on every authenticated request, and the request's session is opened only when the look-up needs it.
setattr(authenticate, REQUEST_ONLY_ATTRIBUTE, True)
setattr(authenticate_for_enrolment, REQUEST_ONLY_ATTRIBUTE, True)
