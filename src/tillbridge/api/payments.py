"""``/v1/payments``: create (idempotent), get, list, cancel, and refunds. Thin: the engine
does the work; every money route goes through :func:`~tillbridge.api.idempotent.idempotent_create`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from tillbridge.api.auth import require_scope
from tillbridge.api.idempotent import (
    IDEMPOTENCY_KEY_DOC,
    actor_of,
    body_doc,
    idempotent_create,
    json_response,
)
from tillbridge.api.problems import problem_doc
from tillbridge.api.schemas import (
    IsoDateTime,
    PaymentCreate,
    PaymentList,
    PaymentOut,
    RefundCreate,
    RefundList,
    RefundOut,
    dumps,
    payment_dict,
    payment_json,
    refund_dict,
)
from tillbridge.app.runtime import Runtime
from tillbridge.clock import as_utc
from tillbridge.domain.states import PaymentState
from tillbridge.money import Money
from tillbridge.payments.engine import NewPayment
from tillbridge.services.apikeys import SCOPE_READ, SCOPE_WRITE, ApiKey
from tillbridge.services.idempotency import StoredResponse
from tillbridge.store import payments_repo
from tillbridge.store.payments_repo import PaymentFilter

router = APIRouter(prefix="/v1/payments", tags=["payments"])

Writer = Annotated[ApiKey, Depends(require_scope(SCOPE_WRITE))]
Reader = Annotated[ApiKey, Depends(require_scope(SCOPE_READ))]
PaymentId = Annotated[str, Path(min_length=1, max_length=100)]


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description=IDEMPOTENCY_KEY_DOC)
]


@router.post(
    "",
    status_code=201,
    response_model=PaymentOut,
    summary="Create a payment (idempotent)",
    response_description="The payment (also on a replay, with `Idempotent-Replayed: true`)",
    responses=problem_doc(400, 401, 403, 409, 413, 415, 422, 503),
    openapi_extra=body_doc(PaymentCreate),
)
async def create_payment(
    request: Request, key: Writer, idempotency_key: IdempotencyKey = None
) -> Response:
    """Record a payment intent and queue its execution; answers ``201`` with the payment.

    Repeating the request with the same ``Idempotency-Key`` and body replays the stored
    response; a different body with the same key is 422, a repeat while the first is running 409.
    """
    rt = runtime_of(request)

    def new(body: PaymentCreate) -> NewPayment:
        return NewPayment(
            amount=Money(body.amount, body.currency),
            reference=body.reference,
            connector=body.connector,
            metadata=body.metadata,
        )

    async def work(conn: AsyncConnection, body: PaymentCreate) -> StoredResponse:
        p = await rt.payments.create(
            conn, new(body), actor=actor_of(key), idempotency_key=idempotency_key
        )
        return StoredResponse(201, payment_json(p))

    def check(body: PaymentCreate) -> None:
        rt.payments.check_new(new(body))  # unknown connector, amount, capability: 422 first

    return await idempotent_create(request, key, idempotency_key, PaymentCreate, work, check=check)


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
    return json_response(payment_json(p))


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
        IsoDateTime | None, Query(description="ISO 8601, inclusive; UTC if no offset")
    ] = None,
    created_to: Annotated[
        IsoDateTime | None, Query(description="ISO 8601, exclusive; UTC if no offset")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
) -> Response:
    """One page of payments; ``next_cursor`` is null on the last page."""
    rt = runtime_of(request)
    f = PaymentFilter(
        reference=reference,
        state=state,
        created_from=as_utc(created_from),  # a time without an offset is read as UTC
        created_to=as_utc(created_to),
    )
    async with rt.db.read() as conn:
        page, next_cursor = await payments_repo.list_payments(conn, f, limit=limit, cursor=cursor)
    return json_response(
        dumps({"data": [payment_dict(p) for p in page], "next_cursor": next_cursor})
    )


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
    return json_response(payment_json(p))


@router.post(
    "/{payment_id}/refunds",
    status_code=201,
    response_model=RefundOut,
    summary="Refund a captured payment, in full or in part (idempotent)",
    responses=problem_doc(400, 401, 403, 404, 409, 413, 415, 422, 503),
    openapi_extra=body_doc(RefundCreate),
)
async def create_refund(
    request: Request, payment_id: PaymentId, key: Writer, idempotency_key: IdempotencyKey = None
) -> Response:
    """Queue a refund of ``amount`` (minor units; all that is left when omitted). Refused
    before anything is sent when the connector cannot refund (``not_supported``) or the amount
    exceeds what is refundable (``refund_exceeds_capture``)."""
    rt = runtime_of(request)

    async def work(conn: AsyncConnection, body: RefundCreate) -> StoredResponse:
        p = await payments_repo.get_payment(conn, payment_id)
        amount = Money(body.amount, p.currency) if body.amount is not None else None
        refund = await rt.payments.refund(
            conn, payment_id, amount, actor=actor_of(key), idempotency_key=idempotency_key,
            reason=body.reason,
        )  # fmt: skip
        return StoredResponse(201, dumps(refund_dict(refund)))

    return await idempotent_create(request, key, idempotency_key, RefundCreate, work)


@router.get(
    "/{payment_id}/refunds",
    response_model=RefundList,
    summary="The refunds of a payment, oldest first",
    responses=problem_doc(401, 403, 404, 422, 503),
)
async def list_refunds(request: Request, payment_id: PaymentId, _key: Reader) -> Response:
    rt = runtime_of(request)
    async with rt.db.read() as conn:
        await payments_repo.get_payment(conn, payment_id)
        refunds = await payments_repo.list_refunds(conn, payment_id)
    return json_response(dumps({"data": [refund_dict(r) for r in refunds]}))
