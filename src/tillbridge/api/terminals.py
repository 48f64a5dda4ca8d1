"""``/v1/terminals``: card-terminal payments, their event stream, input, end of day, status.

Thin: the payment engine and the terminal service
(:mod:`tillbridge.connectors.terminals.service`) do the work.

* ``POST /v1/terminals/{id}/payments`` queues a purchase or a standalone refund on the terminal
  and answers ``202`` with the payment (``connector`` is the terminal id). Idempotent, with the
  same checks as every money route (:mod:`tillbridge.api.idempotent`). A terminal runs one
  payment at a time: a second one waits in line and is canceled, with that reason, if it has not
  started within the start timeout (120 s by default).
* ``GET /v1/payments/{id}/events`` is a Server-Sent Events stream: what happened so far (for a
  late subscriber), then new events, ending with ``event: end`` once the payment is final.
* Cancel is the ordinary ``POST /v1/payments/{id}/cancel``: the engine hands a running terminal
  payment to the card-present runtime (abort on the terminal, or a 409 saying it must be
  cancelled on the terminal).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StrictInt, StrictStr
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response, StreamingResponse

from tillbridge.api.auth import require_scope
from tillbridge.api.idempotent import (
    IDEMPOTENCY_KEY_DOC,
    actor_of,
    body_doc,
    idempotent_create,
    validated_body,
)
from tillbridge.api.payments import runtime_of
from tillbridge.api.problems import problem_doc, validation_response
from tillbridge.api.schemas import (
    Currency,
    MinorUnits,
    _metadata,
    _printable,
    dumps,
    payment_dict,
)
from tillbridge.connectors.terminals import store as ts
from tillbridge.connectors.terminals.service import INPUT_ACTIONS
from tillbridge.domain.payments import Payment
from tillbridge.domain.states import OperationKind
from tillbridge.money import MAX_MINOR, Money
from tillbridge.payments.engine import NewPayment
from tillbridge.services.apikeys import SCOPE_READ, SCOPE_WRITE, ApiKey
from tillbridge.services.idempotency import StoredResponse
from tillbridge.store import payments_repo
from tillbridge.store.types import MAX_ROW_ID

router = APIRouter(tags=["terminals"])

Writer = Annotated[ApiKey, Depends(require_scope(SCOPE_WRITE))]
Reader = Annotated[ApiKey, Depends(require_scope(SCOPE_READ))]
TerminalId = Annotated[str, Path(min_length=1, max_length=64)]
PaymentId = Annotated[str, Path(min_length=1, max_length=100)]


class TerminalPaymentCreate(BaseModel):
    """Body of ``POST /v1/terminals/{id}/payments``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["purchase", "refund"] = Field(
        default="purchase", description="refund: pay the amount back to the card presented"
    )
    amount: Annotated[StrictInt, MinorUnits] = Field(
        gt=0, le=MAX_MINOR, description="Minor units (cents): 1234 is 12.34 EUR", examples=[1234]
    )
    currency: Currency
    reference: Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_printable)]
    metadata: Annotated[dict[str, JsonValue], AfterValidator(_metadata)] = Field(
        default_factory=dict
    )


class TerminalInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["abort", "confirm", "decline", "text"] = Field(
        description=f"One of {', '.join(INPUT_ACTIONS)}; a terminal takes those in its "
        "`input` capability (ZVT: only 'abort')"
    )
    text: Annotated[StrictStr, Field(max_length=200), AfterValidator(_printable)] | None = None


def _json(body: bytes | dict[str, Any], status: int = 200, **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else dumps(body)
    return Response(raw, status_code=status, media_type="application/json", headers=headers or None)


def terminal_payment_dict(p: Payment, tp: ts.TerminalPayment) -> dict[str, Any]:
    """The payment as ``/v1/payments`` shows it, plus its terminal side."""
    return {
        **payment_dict(p),
        "terminal": tp.to_dict(),
        "events_url": f"/v1/payments/{p.id}/events",
    }


@router.post(
    "/v1/terminals/{terminal_id}/payments",
    status_code=202,
    summary="Start a payment or refund on a card terminal (idempotent)",
    responses=problem_doc(400, 401, 403, 404, 409, 413, 415, 422, 503),
    openapi_extra=body_doc(TerminalPaymentCreate),
)
async def create_terminal_payment(
    request: Request,
    terminal_id: TerminalId,
    key: Writer,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description=IDEMPOTENCY_KEY_DOC)
    ] = None,
) -> Response:
    """Queue the payment on the terminal; ``202`` with the payment. Follow its progress with
    ``GET /v1/payments/{id}/events``."""
    rt = runtime_of(request)
    rt.terminals.connector(terminal_id)  # 404 for an unknown terminal, before anything else

    def new(body: TerminalPaymentCreate) -> NewPayment:
        return NewPayment(
            amount=Money(body.amount, body.currency),
            reference=body.reference,
            connector=terminal_id,
            metadata=body.metadata,
            kind=OperationKind(body.kind),
        )

    def check(body: TerminalPaymentCreate) -> None:
        rt.payments.check_new(new(body))  # currency, amount range, refund capability: 422

    async def work(conn: AsyncConnection, body: TerminalPaymentCreate) -> StoredResponse:
        p = await rt.payments.create(
            conn, new(body), actor=actor_of(key), idempotency_key=idempotency_key
        )
        tp = await ts.get_terminal_payment(conn, p.id)
        return StoredResponse(202, dumps(terminal_payment_dict(p, tp)))

    return await idempotent_create(
        request, key, idempotency_key, TerminalPaymentCreate, work, check=check
    )


@router.get(
    "/v1/payments/{payment_id}/events",
    summary="Server-Sent Events of a terminal payment (replay, then live)",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        **problem_doc(401, 403, 404, 503),
    },
)
async def payment_events(
    request: Request,
    payment_id: PaymentId,
    _key: Reader,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ROW_ID, description="Replay events after this id")
    ] = None,
) -> Response:
    """``id:`` is the event id: reconnect with ``Last-Event-ID`` to resume without gaps."""
    rt = runtime_of(request)
    await rt.terminals.payment_side(payment_id)  # 404 unless it exists and ran on a terminal
    start = after or 0
    if last_event_id is not None and last_event_id.strip().isdigit():
        start = int(last_event_id.strip())
        if start > MAX_ROW_ID:  # not an id this bridge sent; the driver could not bind it
            return validation_response(
                [
                    {
                        "in": "header",
                        "field": "Last-Event-ID",
                        "message": f"Input should be less than or equal to {MAX_ROW_ID}",
                        "type": "less_than_equal",
                    }
                ]
            )
    return StreamingResponse(
        rt.terminals.events.stream(payment_id, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/v1/payments/{payment_id}/terminal",
    summary="The terminal side of a payment: identifiers, masked card, receipts",
    responses=problem_doc(401, 403, 404, 503),
)
async def payment_terminal(request: Request, payment_id: PaymentId, _key: Reader) -> Response:
    rt = runtime_of(request)
    tp = await rt.terminals.payment_side(payment_id)
    async with rt.db.read() as conn:
        p = await payments_repo.get_payment(conn, payment_id)
    return _json(terminal_payment_dict(p, tp))


@router.get("/v1/terminals", summary="List terminals", responses=problem_doc(401, 403, 503))
async def list_terminals(request: Request, _key: Reader) -> Response:
    """Every configured terminal: online, busy, last contact, protocol details."""
    return _json({"data": await runtime_of(request).terminals.list()})


@router.get(
    "/v1/terminals/{terminal_id}",
    summary="One terminal's status",
    responses=problem_doc(401, 403, 404, 503),
)
async def get_terminal(request: Request, terminal_id: TerminalId, _key: Reader) -> Response:
    return _json(await runtime_of(request).terminals.status(terminal_id))


@router.post(
    "/v1/terminals/{terminal_id}/input",
    status_code=202,
    summary="Input for the terminal's running payment (recorded; ZVT delivers only abort)",
    responses=problem_doc(400, 401, 403, 404, 409, 415, 422, 503),
    openapi_extra=body_doc(TerminalInput),
)
async def terminal_input(request: Request, terminal_id: TerminalId, key: Writer) -> Response:
    """Deliver input to the payment running on the terminal (``abort`` cancels it). An action
    the terminal cannot take is refused with 422 ``not_supported``."""
    rt = runtime_of(request)
    rt.terminals.connector(terminal_id)
    body = await validated_body(request, TerminalInput)
    if isinstance(body, Response):
        return body
    out = await rt.terminals.submit_input(terminal_id, body.action, body.text, actor=actor_of(key))
    return _json(out, 202)


@router.post(
    "/v1/terminals/{terminal_id}/end-of-day",
    status_code=202,
    summary="Close the terminal's day (totals stored for reconciliation)",
    responses=problem_doc(401, 403, 404, 422, 503),
)
async def end_of_day(request: Request, terminal_id: TerminalId, key: Writer) -> Response:
    """Queued behind the terminal's payments; poll the ``Location`` for the totals."""
    rt = runtime_of(request)
    eod = await rt.terminals.request_settlement(terminal_id, actor=actor_of(key))
    return _json(eod, 202, Location=f"/v1/terminals/{terminal_id}/end-of-day/{eod['id']}")


@router.get(
    "/v1/terminals/{terminal_id}/end-of-day/{settlement_id}",
    summary="An end of day and its totals",
    responses=problem_doc(401, 403, 404, 503),
)
async def get_end_of_day(
    request: Request,
    terminal_id: TerminalId,
    settlement_id: Annotated[str, Path(min_length=1, max_length=40)],
    _key: Reader,
) -> Response:
    return _json(await runtime_of(request).terminals.settlement(terminal_id, settlement_id))
