"""Operational endpoints: ``/healthz``, ``/readyz``, ``/metrics``. No authentication.

- ``/healthz``: the process is alive and serving; never touches the database, so an
  orchestrator does not restart a healthy process because the database is down.
- ``/readyz``: the process can serve traffic: the database answers and the schema is current.
  If the runtime offers ``schema_status()`` (sync or async; raises
  :class:`~tillbridge.errors.SchemaOutOfDate` / :class:`~tillbridge.errors.StoreUnavailable`
  when not ready), it is the check; otherwise a ``SELECT 1`` proves reachability only.
- ``/metrics``: Prometheus text exposition of the process's registry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import Response

from tillbridge.api.problems import problem_doc
from tillbridge.api.schemas import dumps
from tillbridge.app.runtime import Runtime
from tillbridge.observability.metrics import render_metrics

router = APIRouter(tags=["operations"])

_OK = dumps({"status": "ok"})


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> Response:
    return Response(_OK, media_type="application/json")


@router.get(
    "/readyz",
    summary="Readiness: database reachable, schema current",
    responses=problem_doc(503),
)
async def readyz(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    check: Callable[[], Any] | None = getattr(rt, "schema_status", None)
    if check is not None:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        detail: Any = result if isinstance(result, str | dict) else "current"
    else:
        async with rt.db.read() as conn:
            await conn.execute(text("SELECT 1"))
        detail = "not checked (reachability only)"
    return Response(dumps({"status": "ready", "schema": detail}), media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    body, content_type = render_metrics(request.headers.get("accept"))
    return Response(body, media_type=content_type)
