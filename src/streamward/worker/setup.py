"""Making a delivery worker from the process's runtime: standalone (``streamward worker``) or inside
the web app's lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from streamward.runtime import Runtime
from streamward.worker.loop import DeliveryWorker, WorkerOptions


def worker_for(
    runtime: Runtime, *, observe_attempt: Callable[[str, float | None], None] | None = None
) -> DeliveryWorker:
    settings = runtime.settings
    return DeliveryWorker(
        database=runtime.database,
        box=runtime.secret_box,
        client=runtime.egress,
        options=WorkerOptions(
            poll_interval_seconds=settings.worker_poll_interval_seconds,
            concurrency=settings.worker_concurrency,
            per_organisation_concurrency=settings.worker_per_organisation_concurrency,
            housekeeping_interval_seconds=settings.housekeeping_interval_seconds,
            retention_days=settings.retention_days,
        ),
        wakeup=runtime.outbox_wakeup,
        observe_attempt=observe_attempt,
    )


@asynccontextmanager
async def in_process_worker(
    runtime: Runtime, *, observe_attempt: Callable[[str, float | None], None] | None = None
) -> AsyncIterator[DeliveryWorker | None]:
    """The web process's own worker while the app runs, when STREAMWARD_RUN_WORKER says so (else
    None): started on entry; on exit it stops, finishing the sends under way."""
    if not runtime.settings.run_worker:
        yield None
        return
    stop = asyncio.Event()
    worker = worker_for(runtime, observe_attempt=observe_attempt)
    running = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await running
