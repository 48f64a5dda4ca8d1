"""The API's documentation pages: Swagger UI at ``/docs``, and ``/`` pointing at it.

Swagger UI is served from this process, never from a CDN: a self-hosted bridge often runs on a
shop network without Internet access, and its operators should not have their browsers load
scripts from a third party next to an admin key. The assets (Swagger UI 5, which reads the
OpenAPI 3.1 document FastAPI writes) come from the ``fastapi-offline`` package and are mounted
at ``/docs/assets``. ``GET /`` redirects to ``/docs`` until the bridge has a dashboard.

The pages are public, like ``/openapi.json``; every operation still needs its API key (the
page's *Authorize* button takes it).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

DOCS_PATH: Final = "/docs"
ASSETS_PATH: Final = "/docs/assets"


def _assets_dir() -> str:
    return str(files("fastapi_offline") / "static")


def install_docs(app: FastAPI) -> None:
    """Add ``/docs`` (Swagger UI), its assets and the ``/`` redirect to ``app``."""

    async def swagger_ui(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": False, "tryItOutEnabled": False},
        )

    async def home(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{DOCS_PATH}", 307)

    # Plain Starlette routes: they are pages, not API operations (no schema, no auth).
    app.router.routes.append(Mount(ASSETS_PATH, StaticFiles(directory=_assets_dir())))
    app.router.routes.append(Route(DOCS_PATH, swagger_ui, methods=["GET"]))
    app.router.routes.append(Route("/", home, methods=["GET"]))


__all__ = ["ASSETS_PATH", "DOCS_PATH", "install_docs"]
