"""``GET /v1/providers/health``: circuit breaker states of this process's outbound accounts.

Scope ``payments:read`` (``admin`` implies it). Breakers live in process memory, so the answer
describes this API process only: each process learns about an outage on its own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from tillbridge.api.auth import require_scope
from tillbridge.api.problems import problem_doc
from tillbridge.api.schemas import dumps
from tillbridge.app.runtime import Runtime
from tillbridge.services.apikeys import SCOPE_READ, ApiKey

router = APIRouter(prefix="/v1/providers", tags=["providers"])


@router.get(
    "/health", summary="Circuit breaker state per provider account", responses=problem_doc(401, 403)
)
async def providers_health(
    request: Request, _key: Annotated[ApiKey, Depends(require_scope(SCOPE_READ))]
) -> Response:
    rt: Runtime = request.app.state.runtime
    snaps = [s.as_dict() for s in rt.integrations.breakers.snapshot()]
    status = "degraded" if any(s["state"] != "closed" for s in snaps) else "ok"
    return Response(dumps({"status": status, "breakers": snaps}), media_type="application/json")
