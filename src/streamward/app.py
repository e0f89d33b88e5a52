"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import gc
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from streamward import __version__
from streamward.api.audit import router as audit_router
from streamward.api.bintu_user import router as bintu_account_router
from streamward.api.deliveries import router as events_router
from streamward.api.ingest import router as ingest_router
from streamward.api.invites import manage as invites_router
from streamward.api.invites import public as invite_links_router
from streamward.api.login import router as authn_router
from streamward.api.mfa import router as mfa_router
from streamward.api.operator import router as operator_router
from streamward.api.organisation import bintu_token_router
from streamward.api.organisation import router as orgs_router
from streamward.api.passkeys import routers as passkeys_routers
from streamward.api.playback import install_splay_error_handler, jwks_router, keys_router, splay_router
from streamward.api.player_front import PlayerReadFront, player_read_routes
from streamward.api.roles import router as roles_router
from streamward.api.streams import routers as streams_routers
from streamward.api.tags import tag_router
from streamward.api.users import router as users_router
from streamward.api.vod import router as vod_router
from streamward.authn.mfa import recovery
from streamward.bintu_root import BintuRoot
from streamward.config import Settings, load_settings
from streamward.cors import Cors
from streamward.dashboard.account_pages import router as account_pages_router
from streamward.dashboard.audit_pages import router as audit_pages_router
from streamward.dashboard.auth_pages import router as auth_pages_router
from streamward.dashboard.core import render_error
from streamward.dashboard.delivery_pages import router as delivery_pages_router
from streamward.dashboard.org_pages import router as org_pages_router
from streamward.dashboard.role_pages import router as role_pages_router
from streamward.dashboard.second_step_pages import router as second_step_pages_router
from streamward.dashboard.security_pages import router as security_pages_router
from streamward.dashboard.stream_pages import router as stream_pages_router
from streamward.dashboard.templating import STATIC_DIR
from streamward.dashboard.user_pages import router as user_pages_router
from streamward.docs import router as docs_router
from streamward.edge import EdgeText
from streamward.errors import install_error_handlers
from streamward.events import outbox
from streamward.health import router as health_router
from streamward.logs import configure_logging
from streamward.metrics import Metrics
from streamward.metrics import router as metrics_router
from streamward.middleware import BodySizeLimit, ForwardedClient, SecurityHeaders
from streamward.observability import Observability
from streamward.openapi import api_routes, install_openapi
from streamward.runtime import Runtime
from streamward.users.service import allow_special_email_domains
from streamward.worker import in_process_worker

# Routes are matched in order: the paths a live event's audience hits (player reads, playback-token
# checks) and the authenticated organisation read come first. No path of one router matches another's.
ROUTERS = (
    *streams_routers,
    splay_router,
    orgs_router,
    authn_router,
    mfa_router,
    *passkeys_routers,
    bintu_account_router,
    events_router,
    users_router,
    invites_router,
    invite_links_router,
    roles_router,
    audit_router,
    ingest_router,
    bintu_token_router,
    tag_router,
    vod_router,
    keys_router,
    jwks_router,
    operator_router,
    docs_router,
    health_router,
    metrics_router,
)

# Dashboard pages: HTML on the same services as the JSON API.
PAGE_ROUTERS = (
    auth_pages_router,
    second_step_pages_router,
    account_pages_router,
    security_pages_router,
    org_pages_router,
    user_pages_router,
    role_pages_router,
    audit_pages_router,
    delivery_pages_router,
    stream_pages_router,
)

# Routes FastAPI itself adds, and the dashboard's static files: public by nature. (The API
# reference at /api/docs is a route of ours, public through its access rule.)
FRAMEWORK_PUBLIC_PATHS = frozenset({"/api/openapi.json", "/static"})


def tune_garbage_collector() -> None:
    """Fewer cyclic-GC passes in a long-running server.

    Every request allocates thousands of short-lived objects (ORM state, pydantic models), so with
    CPython's default thresholds the collector ran constantly over a heap of long-lived framework
    objects: measured on `GET /api/organisation` (PostgreSQL, wrk, 32 connections) 369 req/s with
    the defaults, 572 req/s after freezing the start-up heap and raising the thresholds.
    """
    gc.collect()
    gc.freeze()  # what exists after start-up lives as long as the process: never scan it again
    gc.set_threshold(50_000, 50, 100)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime.from_settings(settings or load_settings())
    allow_special_email_domains(runtime.settings.special_email_domains)  # the email rule's setting
    recovery.use_secret_key(runtime.settings.secret_key_bytes)  # recovery codes' HMAC key
    # A request that queued events wakes the in-process delivery worker once it has committed.
    outbox.wake_on_commit(runtime.database, runtime.outbox_wakeup)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tune_garbage_collector()
        async with in_process_worker(runtime, observe_attempt=metrics.observe_delivery) as worker:
            if worker is not None:  # on app.state for /readyz (its heartbeat)
                app.state.delivery_worker = worker
            yield
        await runtime.aclose()

    app = FastAPI(
        title="Streamward",
        version=__version__,
        description="Organisations, users, roles and credentials of a streaming cloud (bintu-compatible).",
        openapi_url="/api/openapi.json",
        docs_url=None,  # streamward.docs serves the reference without a CDN
        swagger_ui_oauth2_redirect_url=None,
        redoc_url=None,
        lifespan=lifespan,
        **_framework_telemetry(runtime.settings.framework_telemetry),
    )
    app.state.runtime = runtime
    metrics = app.state.metrics = Metrics()  # this app's own registry
    install_openapi(app)  # every route's error responses and security in the document
    install_error_handlers(app, html=render_error)
    install_splay_error_handler(app)  # the token service's documented error envelope
    for router in ROUTERS + PAGE_ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Innermost of all: a cached public player read is answered here, past every layer below (so it
    # carries their headers, and is counted and logged) but before FastAPI's exception handling,
    # router and request wrapper.
    app.add_middleware(PlayerReadFront, routes=player_read_routes(api_routes(app.routes)), runtime=runtime)
    # Just outside it: refuses control characters, non-UTF-8 text and deep JSON before any route sees them
    # (inside SecurityHeaders, so its refusals carry the headers; inside BodySizeLimit, so it only
    # ever buffers a body within the limit).
    app.add_middleware(EdgeText)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodySizeLimit)
    # Browsers of other origins on the bintu paths; outside BodySizeLimit so its 413 is readable too.
    app.add_middleware(Cors, allowed_origins=runtime.settings.cors_origins)
    # Request id, metrics, access log: every response passes here (the two layers outside never
    # answer); inside BintuRoot, whose scope copy would hide the matched route from it.
    app.add_middleware(Observability, metrics=metrics)
    # Maps the bintu root's /x to /api/x before anything else looks at the path.
    app.add_middleware(
        BintuRoot, host=runtime.settings.bintu_root_host, port=runtime.settings.bintu_root_port
    )
    # Outermost (added last): every layer inside sees the client address and scheme it decides.
    app.add_middleware(
        ForwardedClient,
        trust_forwarded_for=runtime.settings.trust_forwarded_for,
        trusted_proxies=runtime.settings.trusted_proxy_networks,
    )
    return app


def _framework_telemetry(wanted: bool) -> dict[str, Any]:
    """FastAPI's arguments for its native OpenTelemetry (FastAPI 0.16x; older releases have none):
    nothing to change when the operator wants it, else all three signals off, so that a request no
    longer asks the OpenTelemetry API whether a provider is configured."""
    if wanted or "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def app_from_environment() -> FastAPI:
    """For ``uvicorn --factory streamward.app:app_from_environment`` (benchmarks, custom process managers)."""
    settings = load_settings()
    # Processes started by ``serve --workers N`` (or uvicorn directly) never run the CLI's set-up.
    configure_logging(settings)
    return create_app(settings)
