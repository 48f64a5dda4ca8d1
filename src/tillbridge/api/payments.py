"""``/v1/payments``: create (idempotent), get, list and cancel. Thin: the services do the work.

The create route reads and validates its body itself (``PaymentCreate.model_validate_json``)
instead of declaring a FastAPI body parameter, for two reasons: authentication then runs
*before* the body is parsed (an anonymous client learns nothing about our validation), and
parsing JSON once in pydantic-core is cheaper than FastAPI's ``json.loads`` plus a second
validation pass. The OpenAPI request body is declared by hand to match.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from tillbridge.api.auth import require_scope
from tillbridge.api.problems import field_errors, problem_doc, problem_response, validation_response
from tillbridge.api.schemas import (
    PaymentCreate,
    PaymentList,
    PaymentOut,
    dumps,
    payment_dict,
    payment_json,
)
from tillbridge.domain.states import PaymentState
from tillbridge.money import Money
from tillbridge.runtime import Runtime
from tillbridge.services.apikeys import SCOPE_READ, SCOPE_WRITE, ApiKey
from tillbridge.services.idempotency import (
    IdempotencyScope,
    StoredResponse,
    request_hash,
    run_idempotent,
)
from tillbridge.services.payments import NewPayment
from tillbridge.store import payments_repo
from tillbridge.store.payments_repo import PaymentFilter

JSON: Final = "application/json"
CREATE_PATH: Final = "/v1/payments"
# Printable ASCII, 1-255 characters (Starlette has already stripped surrounding whitespace).
_IDEMPOTENCY_KEY_RE: Final = re.compile(r"^[\x20-\x7e]{1,255}$")

router = APIRouter(prefix="/v1/payments", tags=["payments"])

Writer = Annotated[ApiKey, Depends(require_scope(SCOPE_WRITE))]
Reader = Annotated[ApiKey, Depends(require_scope(SCOPE_READ))]
PaymentId = Annotated[str, Path(min_length=1, max_length=100)]


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def actor_of(key: ApiKey) -> str:
    """Who the audit log names for a change made through the API."""
    return f"api_key:{key.id}"


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def _is_json_media(content_type: str | None) -> bool:
    if not content_type:
        return True  # lenient: a client that sends JSON without saying so still works
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


_CREATE_BODY_DOC: Final = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/PaymentCreate"}}},
    }
}


@router.post(
    "",
    status_code=201,
    response_model=PaymentOut,
    summary="Create a payment (idempotent)",
    response_description="The payment (also on a replay, with `Idempotent-Replayed: true`)",
    responses=problem_doc(400, 401, 403, 409, 413, 415, 422, 503),
    openapi_extra=_CREATE_BODY_DOC,
)
async def create_payment(
    request: Request,
    key: Writer,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Required. 1-255 printable ASCII characters, unique per intent. A "
            "repeat within 24 h replays the first response (header `Idempotent-Replayed`).",
        ),
    ] = None,
) -> Response:
    """Record a payment intent and queue its execution; answers ``201`` with the payment.

    Repeating the request with the same ``Idempotency-Key`` and body replays the stored
    response; a different body with the same key is 422, a repeat while the first is running 409.
    """
    if idempotency_key is None:
        return problem_response(
            400, "idempotency_key_missing", "The Idempotency-Key header is required."
        )
    if not _IDEMPOTENCY_KEY_RE.match(idempotency_key):
        return problem_response(
            400,
            "idempotency_key_invalid",
            "The Idempotency-Key header must be 1 to 255 printable ASCII characters.",
        )
    if not _is_json_media(request.headers.get("content-type")):
        return problem_response(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await request.body()
    try:
        body = PaymentCreate.model_validate_json(raw)
    except PydanticValidationError as exc:
        return validation_response(field_errors(exc.errors(include_input=False)))

    rt = runtime_of(request)
    rt.payments.connector(body.connector)  # unknown connector: 422 before any transaction
    new = NewPayment(
        amount=Money(body.amount, body.currency),
        reference=body.reference,
        connector=body.connector,
        metadata=body.metadata,
    )
    scope = IdempotencyScope(
        api_key_id=key.id,
        key=idempotency_key,
        method="POST",
        path=CREATE_PATH,
        request_hash=request_hash("POST", CREATE_PATH, body.model_dump(mode="json")),
    )

    async def work(conn: AsyncConnection) -> StoredResponse:
        p = await rt.payments.create(
            conn, new, actor=actor_of(key), idempotency_key=idempotency_key
        )
        return StoredResponse(201, payment_json(p))

    stored, replayed = await run_idempotent(
        rt.db, scope, work, now=rt.payments.clock(), ttl_s=rt.settings.idempotency_ttl_s
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return _json(stored.body, stored.status_code, headers)


@router.get(
    "/{payment_id}",
    response_model=PaymentOut,
    summary="Get a payment",
    responses=problem_doc(401, 403, 404, 422, 503),
)
async def get_payment(request: Request, payment_id: PaymentId, _key: Reader) -> Response:
    """The payment as it is now (``404`` if there is no such payment)."""
    rt = runtime_of(request)
    async with rt.db.read() as conn:
        p = await payments_repo.get_payment(conn, payment_id)
    return _json(payment_json(p))


def _as_utc(value: datetime | None) -> datetime | None:
    # A time without an offset is read as UTC, the only zone the API speaks.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get(
    "",
    response_model=PaymentList,
    summary="List payments, newest first",
    responses=problem_doc(401, 403, 422, 503),
)
async def list_payments(
    request: Request,
    _key: Reader,
    reference: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    state: Annotated[PaymentState | None, Query()] = None,
    created_from: Annotated[
        datetime | None, Query(description="ISO 8601, inclusive; UTC if no offset")
    ] = None,
    created_to: Annotated[
        datetime | None, Query(description="ISO 8601, exclusive; UTC if no offset")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
) -> Response:
    """One page of payments; ``next_cursor`` is null on the last page."""
    rt = runtime_of(request)
    f = PaymentFilter(
        reference=reference,
        state=state,
        created_from=_as_utc(created_from),
        created_to=_as_utc(created_to),
    )
    async with rt.db.read() as conn:
        page, next_cursor = await payments_repo.list_payments(conn, f, limit=limit, cursor=cursor)
    return _json(dumps({"data": [payment_dict(p) for p in page], "next_cursor": next_cursor}))


@router.post(
    "/{payment_id}/cancel",
    response_model=PaymentOut,
    summary="Cancel a payment before money moves",
    responses=problem_doc(401, 403, 404, 409, 422, 503),
)
async def cancel_payment(request: Request, payment_id: PaymentId, key: Writer) -> Response:
    """Cancel a payment that is ``created`` or ``requires_action``; a repeat is harmless.

    ``409`` (``not_cancelable``) once the payment has started moving money or has ended.
    """
    rt = runtime_of(request)
    p = await rt.payments.cancel(payment_id, actor=actor_of(key))
    return _json(payment_json(p))
