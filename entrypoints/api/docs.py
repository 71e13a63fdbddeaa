"""Swagger UI and ReDoc served from the process itself, so `/docs` works with no network.

The pages' files come pinned from the fastapi-offline package (Swagger UI 5, ReDoc 2); only its
files are used, the routes are ours so that a setting can turn the pages off.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs/assets"
_ASSETS_DIRECTORY = Path(fastapi_offline.__file__).parent / "static"
_OAUTH2_REDIRECT = "/docs/oauth2-redirect"
_REDOC_SCRIPT = "/docs/redoc.standalone.js"
# ReDoc's sidebar footer shows a logo from Redocly's CDN: offline, that is a request that fails
# (and that the docs' CSP refuses). Its bundle is served with our own icon in its place.
_REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@lru_cache(maxsize=1)
def _redoc_bundle() -> bytes:
    text = (_ASSETS_DIRECTORY / "redoc.standalone.js").read_text("utf-8")
    return text.replace(_REDOC_CDN_LOGO, f"{ASSETS_PATH}/favicon.png").encode()


def install_docs(app: FastAPI) -> None:
    app.mount(ASSETS_PATH, StaticFiles(directory=_ASSETS_DIRECTORY), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=_OAUTH2_REDIRECT,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": False, "displayRequestDuration": True},
        )

    @app.get(_OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(_REDOC_SCRIPT, include_in_schema=False)
    async def redoc_script() -> Response:
        return Response(
            _redoc_bundle(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=_REDOC_SCRIPT,
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
