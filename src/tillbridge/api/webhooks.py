"""Webhook intake (``POST /webhooks/{source}/{account}``) and the inbox admin routes.

The intake route is public (senders sign instead of authenticating) and thin: it reads the raw
body under a size limit and hands it to :class:`~tillbridge.inbound.intake.WebhookIntake`, which
verifies and stores it; see that module for the order of checks and the guarantees. Answers:

======  ===========================================================================
200     stored (or a repeat of a stored delivery): ``{"status": "accepted", "id": N}``
400     empty body, or a verified body that is not a JSON object
401     signature or timestamp did not verify (one generic message; details audited)
404     unknown source or account
413     body over the limit
415     ``Content-Type`` is not JSON
429     this address keeps failing verification (``Retry-After``)
503     the database is unavailable, or none of the account's signature keys can be read:
        nothing was stored, send again later (``Retry-After``)
======  ===========================================================================

Admin routes (scope ``admin``): ``GET /v1/webhooks/inbox``, ``GET /v1/webhooks/inbox/{id}``,
``POST /v1/webhooks/inbox/{id}/replay``.
"""

from __future__ import annotations

import math
from typing import Annotated, Final, Literal, get_args

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from tillbridge.api.auth import require_scope
from tillbridge.api.problems import problem_doc, problem_response
from tillbridge.api.schemas import CursorParam, RowIdPath, dumps
from tillbridge.app.runtime import Runtime
from tillbridge.errors import (
    EmptyBody,
    MalformedBody,
    SignatureRejected,
    TooManyFailures,
    UnknownEndpoint,
    UnsupportedMediaType,
)
from tillbridge.inbound import admin
from tillbridge.inbound.intake import WebhookIntake
from tillbridge.inbound.tables import INBOX_STATUSES
from tillbridge.services.apikeys import SCOPE_ADMIN, ApiKey

JSON: Final = "application/json"

router = APIRouter(tags=["webhooks"])
admin_router = APIRouter(prefix="/v1/webhooks/inbox", tags=["webhooks"])

Admin = Annotated[ApiKey, Depends(require_scope(SCOPE_ADMIN))]
#: The ``status`` filter, an enum in the OpenAPI document (every status of the inbox).
InboxStatus = Literal[
    "queued", "retrying", "processed", "recorded", "ignored", "invalid", "duplicate", "dead"
]
assert set(get_args(InboxStatus)) == set(INBOX_STATUSES), "keep InboxStatus in step"
Segment = Annotated[str, Path(min_length=1, max_length=64)]


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The raw body, or None once it grows past ``limit`` (nothing beyond it is buffered)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


INTAKE_PATH: Final = "/webhooks/{source}/{account}"


async def receive(request: Request) -> Response:
    """The intake endpoint, as a plain Starlette route.

    Why not a FastAPI route: this is the one hot path that must stay cheap under a webhook
    storm, and FastAPI's per-request dependency and parameter machinery costs several times what
    verifying and storing a delivery does. It needs none of it (two path segments, raw bytes).
    """
    source = request.path_params["source"]
    account = request.path_params["account"]
    intake: WebhookIntake = _rt(request).integrations.intake
    try:
        if len(source) > 64 or len(account) > 64:
            raise UnknownEndpoint()
        intake.check_endpoint(source, account)
        limit = intake.settings.max_body_bytes
        raw = await _read_limited(request, limit)
        if raw is None:
            return problem_response(
                413, "payload_too_large", f"The request body exceeds the limit of {limit} bytes."
            )
        client = request.client
        accepted = await intake.receive(
            source, account, raw, request.headers, client.host if client else None
        )
    except UnknownEndpoint as exc:
        return problem_response(404, exc.code, "No webhook endpoint here.")
    except SignatureRejected as exc:
        return problem_response(401, exc.code, exc.message)
    except TooManyFailures as exc:
        return problem_response(
            429,
            exc.code,
            exc.message,
            headers={"Retry-After": str(math.ceil(exc.retry_after))},
        )
    except (EmptyBody, MalformedBody, UnsupportedMediaType) as exc:
        return problem_response(exc.http_status, exc.code, exc.message)
    body = dumps({"status": "accepted", "id": accepted.inbox_id})
    return Response(body, media_type=JSON)


router.add_route(INTAKE_PATH, receive, methods=["POST"], include_in_schema=False)


@router.post(
    INTAKE_PATH,
    summary="Receive a signed webhook (stored durably before the 2xx)",
    responses=problem_doc(400, 401, 404, 413, 415, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The provider's raw, signed bytes (Xentral: a JSON envelope)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def receive_documented(source: Segment, account: Segment) -> Response:  # pragma: no cover
    """Documents the intake in OpenAPI; never reached, the plain route above matches first."""
    raise RuntimeError("the plain intake route handles this path")


@admin_router.get(
    "", summary="List inbox entries, newest first", responses=problem_doc(401, 403, 422)
)
async def list_inbox(
    request: Request,
    _key: Admin,
    status: Annotated[InboxStatus | None, Query()] = None,
    source: Annotated[str | None, Query(max_length=64)] = None,
    account: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=admin.MAX_PAGE)] = 50,
    cursor: CursorParam = None,
) -> Response:
    """One page of inbox entries; ``next_cursor`` is null on the last page."""
    page = await admin.list_inbox(
        _rt(request).db,
        status=status,
        source=source,
        account=account,
        cursor=cursor,
        limit=limit,
    )
    return Response(dumps({"data": page.items, "next_cursor": page.next_cursor}), media_type=JSON)


@admin_router.get(
    "/{inbox_id}", summary="One inbox entry with its processing job", responses=problem_doc(404)
)
async def show_inbox(request: Request, _key: Admin, inbox_id: RowIdPath) -> Response:
    rt = _rt(request)
    return Response(dumps(await admin.show_inbox(rt.db, inbox_id, rt.redactor)), media_type=JSON)


@admin_router.post(
    "/{inbox_id}/replay",
    status_code=202,
    summary="Process a stored event again (idempotent per event)",
    responses=problem_doc(404, 409),
)
async def replay_inbox(request: Request, _key: Admin, inbox_id: RowIdPath) -> Response:
    job_id = await admin.replay(_rt(request).db, inbox_id)
    body = dumps({"id": inbox_id, "status": "queued", "job_id": job_id})
    return Response(body, status_code=202, media_type=JSON)
