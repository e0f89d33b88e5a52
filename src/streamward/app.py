"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from streamward import __version__
from streamward.authn.api import router as authn_router
from streamward.config import Settings, load_settings
from streamward.errors import install_error_handlers
from streamward.middleware import BodySizeLimit, SecurityHeaders
from streamward.orgs.api import router as orgs_router
from streamward.runtime import Runtime

ROUTERS = (authn_router, orgs_router)

# Routes FastAPI itself adds; public by nature (documentation of a public API).
FRAMEWORK_PUBLIC_PATHS = frozenset(
    {"/api/openapi.json", "/api/docs", "/api/docs/oauth2-redirect", "/api/redoc"}
)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime.from_settings(settings or load_settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await runtime.database.dispose()

    app = FastAPI(
        title="Streamward",
        version=__version__,
        description="Organisations, users, roles and credentials of a streaming cloud (bintu-compatible).",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodySizeLimit)
    return app


def app_from_environment() -> FastAPI:
    """For ``uvicorn --factory streamward.app:app_from_environment`` (benchmarks, custom process managers)."""
    return create_app(load_settings())
