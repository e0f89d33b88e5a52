from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import Depends, Request

from streamward.authn.service import principal_from_api_key, principal_from_token
from streamward.authz.principal import Principal
from streamward.db import DbSession
from streamward.errors import BadRequest, Unauthenticated
from streamward.request_context import note_organisation
from streamward.runtime import Runtime, client_address, get_runtime

TOKEN_HEADER = "X-BINTU-TOKEN"
API_KEY_HEADER = "X-BINTU-APIKEY"
MAX_CREDENTIAL_LENGTH = 256


async def authenticate(
    request: Request, db: DbSession, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> Principal:
    token = request.headers.get(TOKEN_HEADER)
    api_key = request.headers.get(API_KEY_HEADER)
    if token and api_key:
        raise BadRequest(
            f"Send either {TOKEN_HEADER} or {API_KEY_HEADER}, not both.", code="ambiguous_credentials"
        )
    credential = token or api_key
    if not credential:
        raise Unauthenticated(f"Send a bintu token ({TOKEN_HEADER}) or the API key ({API_KEY_HEADER}).")
    if len(credential) > MAX_CREDENTIAL_LENGTH:
        raise Unauthenticated()
    principal = (
        await principal_from_token(db, runtime.database, credential)
        if token
        else await principal_from_api_key(db, credential)
    )
    if principal is None:
        raise Unauthenticated()
    note_organisation(principal.organisation.id)  # for the request's log lines
    address = client_address(request, trust_forwarded_for=runtime.settings.trust_forwarded_for)
    return replace(principal, client_address=address)
