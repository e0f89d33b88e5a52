"""``/healthz`` and ``/readyz`` for the orchestrator (Kubernetes probes, a load balancer's checks).

``/healthz``: the process answers; nothing else is looked at (a liveness probe that followed the
database would restart every replica when the database blinks). ``/readyz``: this process can do
its work: the database answers, its schema is at the newest migration, the delivery worker (when
this process runs one) is looping, Redis (when configured) answers. 200 ``ready`` or 503
``unready`` with one entry per check, so the operator sees what failed.

Both are public and small. They name no host, URL or exception text: a database URL may carry a
password, and a driver's error message often repeats the URL.
"""

from __future__ import annotations

import asyncio
import time
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from streamward.migrate import current_heads
from streamward.runtime import Runtime
from streamward.web.access import PUBLIC
from streamward.web.routing import Router
from streamward.web.session import reads

# Short: a dead database must turn the probe red within the probe's own timeout (usually 1-5 s).
CHECK_TIMEOUT_SECONDS = 2.0
# The worker records a heartbeat at least every poll interval; this much silence means it is stuck.
WORKER_SILENCE_SECONDS = 30.0

Check = dict[str, Any]

router = Router(tags=["operations"])


@cache
def expected_heads() -> tuple[str, ...]:
    """The migration heads this code expects; the script folder is read once per process (the
    URL only completes Alembic's configuration: the scripts are the same for every database)."""
    return tuple(sorted(current_heads("sqlite://")))


def _failure(exc: BaseException) -> str:
    # A category, never the exception's text (it may quote the URL and its password).
    return "timeout" if isinstance(exc, TimeoutError) else "unreachable"


async def _database_checks(runtime: Runtime) -> tuple[Check, Check]:
    async def read_versions() -> list[str]:
        async with runtime.database.session(write=False) as session:
            await session.execute(text("SELECT 1"))
            try:
                rows = await session.execute(text("SELECT version_num FROM alembic_version"))
            except Exception:  # no alembic_version table: a database never migrated
                return []
            return sorted(str(row[0]) for row in rows)

    try:
        current = await asyncio.wait_for(read_versions(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return {"ok": False, "error": _failure(exc)}, {"ok": False, "error": "database_unavailable"}
    expected = expected_heads()
    schema: Check = {
        "ok": tuple(current) == expected,
        "current": ",".join(current) or None,
        "expected": ",".join(expected),
    }
    return {"ok": True}, schema


def _worker_check(request: Request) -> Check | None:
    """None when this process runs no delivery worker (STREAMWARD_RUN_WORKER=false, or no lifespan)."""
    worker = getattr(request.app.state, "delivery_worker", None)
    if worker is None:
        return None
    beat: float | None = worker.last_heartbeat
    if beat is None:
        return {"ok": False, "error": "stopped"}
    silence = time.monotonic() - beat
    limit = WORKER_SILENCE_SECONDS + worker.options.poll_interval_seconds
    check: Check = {"ok": silence <= limit, "lastHeartbeatSecondsAgo": round(silence, 3)}
    if not check["ok"]:
        check["error"] = "stalled"
    return check


async def _redis_check(runtime: Runtime) -> Check | None:
    """None when no Redis is configured; else whether the shared rate limits can be checked."""
    if runtime.settings.redis_url is None:
        return None
    try:
        answered = await asyncio.wait_for(runtime.limits.ping(), timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return {"ok": False, "error": "timeout"}
    return {"ok": True} if answered else {"ok": False, "error": "unreachable"}


@router.get("/healthz", dependencies=[PUBLIC], include_in_schema=False)
@reads
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", dependencies=[PUBLIC], include_in_schema=False)
@reads
async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    database, schema = await _database_checks(runtime)
    checks: dict[str, Check] = {"database": database, "schema": schema}
    if (worker := _worker_check(request)) is not None:
        checks["worker"] = worker
    if (redis := await _redis_check(runtime)) is not None:
        checks["redis"] = redis
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unready", "checks": checks}, status_code=200 if ready else 503
    )
