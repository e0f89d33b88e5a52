"""The baselines `make bench` measures beside Streamward, served exactly like it (uvicorn, one worker):

* ``fastapi_hello``: a bare FastAPI route — what the framework costs before any work;
* ``stack_limit``: a FastAPI route that authenticates a bintu token the way Streamward must (SHA-256
  of the header; session → membership with the same token key → organisation → account, one
  prepared asyncpg query on a pool as large as the load) and answers the organisation. This is the
  ceiling of this stack for a request that checks its credential in the database on every request.

``BENCH_DATABASE_URL`` names the PostgreSQL database (the benchmark's, migrated and with its
organisation created) for ``stack_limit``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request

fastapi_hello = FastAPI()


@fastapi_hello.get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


_LOOKUP = """
SELECT o.id, o.name, o.support_level, o.analytics_level, o.trial, o.packages, a.email, m.role
FROM session s
JOIN membership m ON m.id = s.membership_id AND m.token_key = s.token_key
JOIN organisation o ON o.id = m.organisation_id
JOIN account a ON a.id = m.account_id
WHERE s.token_hash = $1 AND s.expires_at > now()
"""


@asynccontextmanager
async def _pool(app: FastAPI) -> AsyncIterator[None]:
    url = os.environ["BENCH_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    size = int(os.environ.get("BENCH_POOL_SIZE", "40"))
    app.state.pool = await asyncpg.create_pool(url, min_size=size, max_size=size)
    yield
    await app.state.pool.close()


stack_limit = FastAPI(lifespan=_pool)


@stack_limit.get("/api/organisation")
async def organisation(request: Request) -> dict[str, Any]:
    token = request.headers.get("x-bintu-token")
    if not token:
        raise HTTPException(401)
    row = await request.app.state.pool.fetchrow(_LOOKUP, hashlib.sha256(token.encode()).hexdigest())
    if row is None:
        raise HTTPException(401)
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "supportLevel": row["support_level"],
        "analyticsLevel": row["analytics_level"],
        "trial": row["trial"],
        "packages": row["packages"],
        "user": {"email": row["email"], "role": row["role"]},
    }
