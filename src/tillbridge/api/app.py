"""The HTTP API application: :func:`create_app` builds it around a :class:`Runtime`.

No globals: the runtime and the authenticator live on ``app.state`` and routers reach them
through the request. Request metrics go to :mod:`tillbridge.observability.metrics`
(``observe_http_request``, ``render_metrics``). The caller owns the runtime's lifecycle
(``serve`` builds it, hands it here, and closes it at shutdown); the app never closes it.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from tillbridge.api import ops, payments, providers, terminals, webhook_deliveries, webhooks
from tillbridge.api.auth import DEFAULT_CACHE_TTL_S, Authenticator
from tillbridge.api.docs import install_docs
from tillbridge.api.idempotent import BODY_MODELS, document_idempotency_key
from tillbridge.api.middleware import RequestContextMiddleware
from tillbridge.api.problems import install_handlers, patch_openapi
from tillbridge.api.query import refuse_unknown_query
from tillbridge.app.runtime import Runtime
from tillbridge.observability.metrics import observe_http_request

API_DESCRIPTION = """\
Payments through tillbridge. Authenticate with `Authorization: Bearer <api key>`.
Every error is `application/problem+json` (RFC 9457) with a stable `code`.
"""


def _version() -> str:
    try:
        return importlib.metadata.version("tillbridge")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class TillbridgeAPI(FastAPI):
    """FastAPI with an OpenAPI document that tells the truth about problem responses."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = patch_openapi(super().openapi())
            document_idempotency_key(schema)
            comps = schema["components"]["schemas"]
            for model_name, model in BODY_MODELS.items():
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in body.pop("$defs", {}).items():
                    comps.setdefault(name, sub)
                comps[model_name] = body
            self.openapi_schema = schema
        return self.openapi_schema


def create_app(runtime: Runtime, *, auth_cache_ttl_s: float = DEFAULT_CACHE_TTL_S) -> FastAPI:
    """Build the API for ``runtime``.

    Uses ``runtime.db``, ``runtime.payments``, ``runtime.settings.max_body_bytes`` and
    ``runtime.settings.idempotency_ttl_s``, and ``runtime.schema_status()`` for ``/readyz`` when
    the runtime has it. ``auth_cache_ttl_s`` bounds how long a revoked key still works in this
    process (0 disables the cache).
    """
    app = TillbridgeAPI(
        title="tillbridge",
        version=_version(),
        description=API_DESCRIPTION,
        docs_url=None,  # ours, with local assets (api/docs.py): FastAPI's loads them from a CDN
        redoc_url=None,
        dependencies=[Depends(refuse_unknown_query)],
    )
    app.state.runtime = runtime
    app.state.auth = Authenticator(runtime.db, cache_ttl_s=auth_cache_ttl_s)
    install_handlers(app)
    app.state.route_methods = []
    for router in (
        webhooks.router,  # first: the webhook intake is the hottest path (routes match in order)
        payments.router,
        ops.router,
        webhooks.admin_router,
        webhook_deliveries.router,
        providers.router,
        terminals.router,  # /v1/terminals/*, /v1/payments/{id}/events and /terminal
    ):
        app.include_router(router)
        app.state.route_methods += [
            (r.path_regex, set(r.methods or ())) for r in router.routes if isinstance(r, APIRoute)
        ]
    install_docs(app)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=runtime.settings.max_body_bytes,
        observe=observe_http_request,
    )
    return app
