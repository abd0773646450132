"""The API docs pages (/docs: Swagger UI, /redoc: ReDoc) from assets installed with imgest.

FastAPI's own pages load their scripts from a CDN, so they are blank where the server has no
internet access. The assets here come from the `fastapi-offline` package (Swagger UI,
Apache-2.0; ReDoc, MIT; the package itself MIT), served under /docs/assets; the pages run no
inline script, so their Content-Security-Policy allows scripts from this origin only.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse, Response

from imgest.api.assets import Assets

ASSETS = "/docs/assets"
ASSET_DIR = Path(str(files("fastapi_offline") / "static"))

# Swagger UI sets style attributes and inline SVG images; ReDoc runs a worker from a blob.
CSP = (
    "default-src 'self'; "
    "img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; "
    "worker-src 'self' blob:; "
    "connect-src 'self'; "
    "form-action 'self'; "
    "base-uri 'none'; "
    "frame-ancestors 'none'"
)

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API docs</title>
<link rel="icon" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

# No validator badge: it would call validator.swagger.io.
_INIT = """"use strict";
(function () {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    showExtensions: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  });
})();
"""


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets (create the app with docs_url=redoc_url=None)."""
    openapi = app.openapi_url or "/openapi.json"
    app.mount(ASSETS, Assets(directory=ASSET_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = _SWAGGER_PAGE.format(title=app.title, assets=ASSETS, openapi=openapi)
        return HTMLResponse(page, headers=_headers())

    @app.get("/docs/init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(_INIT, media_type="text/javascript", headers=_headers())

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi,
            title=f"{app.title} - API docs",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        return HTMLResponse(page.body, headers=_headers())
