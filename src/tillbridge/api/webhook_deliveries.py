"""Outgoing webhooks, admin routes (scope ``admin``): the delivery log, manual redelivery, and
subscribers (a 410 answer disables one; enabling it again is an operator decision).

``GET /v1/webhooks/deliveries``, ``GET /v1/webhooks/deliveries/{id}`` (with every attempt),
``POST /v1/webhooks/deliveries/{id}/redeliver``, ``GET /v1/webhooks/subscribers``,
``POST /v1/webhooks/subscribers/{name}/enable``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from tillbridge.api.auth import require_scope
from tillbridge.api.problems import problem_doc
from tillbridge.api.schemas import CursorParam, RowIdPath, dumps
from tillbridge.app.runtime import Runtime
from tillbridge.services.apikeys import SCOPE_ADMIN, ApiKey
from tillbridge.webhooks_out import admin
from tillbridge.webhooks_out.tables import DELIVERY_STATUSES

JSON: Final = "application/json"

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Admin = Annotated[ApiKey, Depends(require_scope(SCOPE_ADMIN))]
#: The ``status`` filter, an enum in the OpenAPI document (every status of a delivery).
DeliveryStatus = Literal["pending", "retrying", "succeeded", "dead", "skipped"]
assert set(get_args(DeliveryStatus)) == set(DELIVERY_STATUSES), "keep DeliveryStatus in step"


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


@router.get(
    "/deliveries",
    summary="Outgoing deliveries, newest first",
    responses=problem_doc(401, 422),
)
async def list_deliveries(
    request: Request,
    _key: Admin,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    subscriber: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=admin.MAX_PAGE)] = 50,
    cursor: CursorParam = None,
) -> Response:
    """One page of deliveries; ``next_cursor`` is null on the last page."""
    page = await admin.list_deliveries(
        _rt(request).db, status=status, subscriber=subscriber, cursor=cursor, limit=limit
    )
    return Response(dumps({"data": page.items, "next_cursor": page.next_cursor}), media_type=JSON)


@router.get(
    "/deliveries/{delivery_id}",
    summary="One delivery with its attempt log",
    responses=problem_doc(404),
)
async def show_delivery(request: Request, _key: Admin, delivery_id: RowIdPath) -> Response:
    return Response(dumps(await admin.get_delivery(_rt(request).db, delivery_id)), media_type=JSON)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Send a delivery again (same webhook-id, fresh schedule)",
    responses=problem_doc(404, 409),
)
async def redeliver(request: Request, _key: Admin, delivery_id: RowIdPath) -> Response:
    job_id = await admin.redeliver(_rt(request).db, delivery_id)
    body = dumps({"id": delivery_id, "status": "pending", "job_id": job_id})
    return Response(body, status_code=202, media_type=JSON)


@router.get("/subscribers", summary="Configured subscribers and whether they are enabled")
async def list_subscribers(request: Request, _key: Admin) -> Response:
    rt = _rt(request)
    views = await admin.list_subscribers(rt.db, rt.integrations.subscriptions)
    return Response(dumps({"data": [v.as_dict() for v in views]}), media_type=JSON)


@router.post(
    "/subscribers/{name}/enable",
    summary="Enable a subscriber disabled by a 410 answer",
    responses=problem_doc(404),
)
async def enable_subscriber(
    request: Request, _key: Admin, name: Annotated[str, Path(min_length=1, max_length=64)]
) -> Response:
    rt = _rt(request)
    await admin.enable_subscriber(rt.db, rt.integrations.subscriptions, name)
    return Response(dumps({"name": name, "enabled": True}), media_type=JSON)
