"""The interactive API reference at ``/api/docs``: Swagger UI served from this package.

FastAPI's own page loads Swagger UI from a CDN with an inline initialiser, which would need a CSP
that trusts a third party. This page loads only files of this origin: ``docs.js``, which starts
Swagger UI, and swagger-ui-dist 5.35.0 as released on npm (``swagger-ui-bundle.js`` and
``swagger-ui.css`` in ``docs_assets/``, unchanged, with their LICENSE and NOTICE). To update, replace
those two files with a newer release's. Swagger UI 5 or newer is needed to render OpenAPI 3.1, the
version FastAPI writes (the ``swagger-ui-bundle`` package on PyPI still ships 4.15).
"""

from __future__ import annotations

import hashlib
from html import escape
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse

from streamward.errors import NotFound
from streamward.web.access import PUBLIC
from streamward.web.routing import Router
from streamward.web.session import reads

ASSETS_DIR = Path(__file__).parent / "docs_assets"
DOCS_PATH = "/api/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"

# Set on the page itself: the security-headers middleware keeps a CSP a response already has.
# Swagger UI sets styles through the DOM (not inline markup), so 'self' suffices for style-src;
# img-src needs data: for the icons its stylesheet embeds.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

# The only files served, with their types: nothing else in the folder is reachable.
_ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
}
# Asset URLs carry a digest of the files, so a browser may keep them for a day without revalidating.
_ASSET_CACHE_CONTROL = "public, max-age=86400"


def _assets_version() -> str:
    digest = hashlib.sha256()
    for name in sorted(_ASSET_TYPES):
        digest.update((ASSETS_DIR / name).read_bytes())
    return digest.hexdigest()[:10]


_VERSION = _assets_version()

router = Router(include_in_schema=False, dependencies=[PUBLIC])


def docs_html(title: str, openapi_url: str) -> str:
    def asset(name: str) -> str:
        return escape(f"{ASSETS_PATH}/{name}?v={_VERSION}")

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} API reference</title>
<link rel="icon" href="/static/favicon.svg">
<link rel="stylesheet" href="{asset("swagger-ui.css")}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>
<script src="{asset("swagger-ui-bundle.js")}"></script>
<script src="{asset("docs.js")}"></script>
</body>
</html>
"""


@router.get(DOCS_PATH, response_class=HTMLResponse)
@reads
async def api_reference(request: Request) -> HTMLResponse:
    app = request.app
    return HTMLResponse(
        docs_html(app.title, app.openapi_url or ""), headers={"Content-Security-Policy": DOCS_CSP}
    )


@router.get(f"{ASSETS_PATH}/{{name}}")
@reads
async def api_reference_asset(name: str) -> FileResponse:
    media_type = _ASSET_TYPES.get(name)
    if media_type is None:
        raise NotFound()
    return FileResponse(
        ASSETS_DIR / name, media_type=media_type, headers={"Cache-Control": _ASSET_CACHE_CONTROL}
    )
