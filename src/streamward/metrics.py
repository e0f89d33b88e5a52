"""Prometheus metrics: what the operator graphs and alerts on.

One ``CollectorRegistry`` per application (never prometheus-client's global one): two apps in one
process (the tests) count apart. Labels are bounded sets only: the route *template* (never the raw
path, which carries ids and link tokens), the method, the status; outcomes from fixed lists.

``GET /metrics`` answers the platform operator only (``Authorization: Bearer
<STREAMWARD_OPERATOR_TOKEN>``, the operator API's rule: 404 while no token is configured, 401 for a
missing or wrong one). The outbox and pool gauges are read when scraped (one indexed query), so
they are right whichever process runs the delivery worker.
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime
from typing import Annotated

from fastapi import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func, select

from streamward.api.operator import OPERATOR_ACCESS
from streamward.audit.service import Actor
from streamward.db import utcnow
from streamward.events.models import OutboxEvent
from streamward.runtime import Runtime
from streamward.web.routing import Router
from streamward.web.session import reads

log = logging.getLogger(__name__)

# A scrape must not hang on a stuck database: the gauges it cannot read are reported as NaN.
SCRAPE_QUERY_TIMEOUT_SECONDS = 2.0
UNMATCHED_ROUTE = "unmatched"  # no route matched (404), or refused before routing (413, bad text)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The metrics of one application."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.http_requests = Counter(
            "streamward_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "streamward_http_request_duration_seconds",
            "Time from receiving a request to the end of its response, by route template and method.",
            ["route", "method"],
            registry=registry,
        )
        self.logins = Counter(
            "streamward_logins",
            "Login attempts by outcome (success, invalid_credentials, rate_limited, ...).",
            ["outcome"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "streamward_rate_limit_refusals",
            "Requests refused with 429 by a rate limit, by limit name (the route template when unnamed).",
            ["limit"],
            registry=registry,
        )
        self.delivery_attempts = Counter(
            "streamward_webhook_delivery_attempts",
            "Webhook delivery attempts made by this process's worker, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.delivery_duration = Histogram(
            "streamward_webhook_delivery_duration_seconds",
            "Time a webhook receiver took to answer (or to fail), by outcome.",
            ["outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "streamward_outbox_pending_events",
            "Events waiting for delivery (all processes), read when scraped.",
            registry=registry,
        )
        self.outbox_oldest_age = Gauge(
            "streamward_outbox_oldest_pending_age_seconds",
            "Age of the oldest event waiting for delivery (0 when none), read when scraped.",
            registry=registry,
        )
        self.pool_in_use = Gauge(
            "streamward_db_pool_connections_in_use",
            "Database connections checked out of this process's pool, read when scraped.",
            registry=registry,
        )
        # labels() validates and locks on every call; the request path caches the children.
        self._request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # Keyed by the label, not the method as sent: made-up methods must not grow this cache.
        method_label = method if method in KNOWN_METHODS else "other"
        key = (route, method_label, status)
        series = self._request_series.get(key)
        if series is None:
            series = (
                self.http_requests.labels(route, method_label, str(status)),
                self.http_duration.labels(route, method_label),
            )
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def observe_login(self, outcome: str) -> None:
        self.logins.labels(outcome).inc()

    def observe_rate_limit(self, limit: str) -> None:
        self.rate_limited.labels(limit).inc()

    def observe_delivery(self, outcome: str, seconds: float | None) -> None:
        """The delivery worker's report of one attempt (succeeded, failed, refused, skipped)."""
        self.delivery_attempts.labels(outcome).inc()
        if seconds is not None:
            self.delivery_duration.labels(outcome).observe(seconds)

    async def refresh(self, runtime: Runtime) -> None:
        """The gauges read at scrape time."""
        pool = runtime.database.engine.pool
        checked_out = getattr(pool, "checkedout", None)
        self.pool_in_use.set(checked_out() if callable(checked_out) else math.nan)
        try:
            pending, oldest = await asyncio.wait_for(
                _outbox_backlog(runtime), timeout=SCRAPE_QUERY_TIMEOUT_SECONDS
            )
        except Exception:  # the database is down or slow: say "unknown", not 0
            log.warning("could not read the outbox backlog for /metrics", exc_info=False)
            self.outbox_pending.set(math.nan)
            self.outbox_oldest_age.set(math.nan)
            return
        self.outbox_pending.set(pending)
        self.outbox_oldest_age.set(max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def _outbox_backlog(runtime: Runtime) -> tuple[int, datetime | None]:
    # ix_outbox_event_pending (status, next_attempt_at) serves the WHERE.
    statement = select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.status == "pending")
    async with runtime.database.session(write=False) as session:
        count, oldest = (await session.execute(statement)).one()
    return int(count), oldest


def metrics_of(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


router = Router(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (platform operator)",
    response_class=Response,
    include_in_schema=False,
)
@reads
async def read_metrics(request: Request, _: Annotated[Actor, OPERATOR_ACCESS]) -> Response:
    metrics = metrics_of(request)
    await metrics.refresh(request.app.state.runtime)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
