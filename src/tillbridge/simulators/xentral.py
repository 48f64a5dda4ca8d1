"""A Xentral stand-in: signed POS webhook deliveries and the v3 write-back endpoints.

(a) :func:`card_payment_body`, :func:`envelope` and :func:`deliveries` build and sign
``pos.cardPaymentCaptured`` events exactly as Xentral signs them (hex HMAC-SHA256 over the raw
body followed by the ``xentral-request-timestamp`` value), with knobs for the faults a receiver
must survive: duplicate delivery, bad signature, stale or future timestamp.

(b) :func:`create_app` is an ASGI app serving ``PATCH``/``GET`` on ``/api/v3/invoices/{id}`` and
``/api/v3/salesOrders/{id}`` with bearer auth. It records every request it receives and can be
told to fail the next requests (5xx, 429 with ``Retry-After``, slow answers, or "applied but
answered 500"). Use it in-process through ``httpx2.ASGITransport`` or behind uvicorn.

Like Xentral's API, it ignores body properties it does not know.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tillbridge.erp.xentral.verifier import (
    XENTRAL_SIGNATURE_HEADER,
    XENTRAL_TIMESTAMP_HEADER,
    xentral_signature,
)
from tillbridge.money import Money
from tillbridge.outbound.redact import redact_headers

# (a) events ------------------------------------------------------------------------------------

DEFAULT_KEY: Final = "sim-signature-key-0001"  # 22 chars; Xentral keys are 20-255 chars
STALE_SECONDS: Final = 3600


@dataclass(frozen=True, slots=True)
class XentralDelivery:
    """One HTTP delivery as Xentral would POST it: raw body bytes and headers."""

    body: bytes
    headers: dict[str, str]


def card_payment_body(
    amount: Money,
    *,
    operation: str = "sell",
    tip: Money | None = None,
    project_id: int | str = 1,
    project_number: str | None = None,
    document_number: str = "40001234",
    document_type: str = "invoice",
    payment_method: str = "card",
    created_at: str = "2025-06-11T15:32:00+02:00",
    terminal_mode: str | None = "send_and_receive_automatic",
    guid: str | None = None,
    variant: Literal["documented", "seed"] = "documented",
) -> dict[str, Any]:
    """The event body. ``variant="seed"`` mimics the older guide: ``amount``, no tip, no settings.

    Amounts are emitted as JSON numbers, as Xentral does; the float repr of any amount with at
    most 15 significant digits reads back exactly.
    """
    project: dict[str, Any] = {"id": project_id}
    if project_number is not None:
        project["number"] = project_number
    number = float(amount.to_decimal())
    if variant == "seed":
        return {
            "operation": operation,
            "project": project,
            "currency": amount.currency,
            "amount": number,
            "documentNumber": document_number,
            "documentType": document_type,
            "createdAt": created_at,
        }
    body: dict[str, Any] = {
        "operation": operation,
        "project": project,
        "currency": amount.currency,
        "totalAmount": number,
        "tip": float((tip or Money.zero(amount.currency)).to_decimal()),
        "documentNumber": document_number,
        "documentType": document_type,
        "paymentMethod": payment_method,
        "guid": guid,
        "createdAt": created_at,
    }
    if terminal_mode is not None:
        body["settings"] = {"terminalMode": terminal_mode}
    return body


def envelope(
    body: Mapping[str, Any], event: str = "pos.cardPaymentCaptured", version: int = 1
) -> dict[str, Any]:
    """Wrap ``body`` the way webhook deliveries do: ``{"type": "com.xentral.<event>.vN", ...}``."""
    return {"type": f"com.xentral.{event}.v{version}", "body": dict(body)}


def encode(payload: Mapping[str, Any] | bytes) -> bytes:
    """Compact JSON bytes, as a sender would put them on the wire."""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":"), default=_json_default).encode("utf-8")


def sign_delivery(
    payload: Mapping[str, Any] | bytes, *, key: str, timestamp: int
) -> XentralDelivery:
    """Sign one delivery exactly as Xentral does."""
    body = encode(payload)
    ts = str(timestamp)
    return XentralDelivery(
        body=body,
        headers={
            "content-type": "application/json",
            XENTRAL_SIGNATURE_HEADER: xentral_signature(key, body, ts),
            XENTRAL_TIMESTAMP_HEADER: ts,
        },
    )


def deliveries(
    payload: Mapping[str, Any] | bytes,
    *,
    now: int,
    key: str = DEFAULT_KEY,
    duplicate: bool = False,
    bad_signature: bool = False,
    stale: bool = False,
    timestamp_offset: int = 0,
) -> list[XentralDelivery]:
    """The deliveries a receiver sees for one event, with fault knobs.

    - ``duplicate``: a second delivery of the same body, re-signed one second later (what a
      sender's retry looks like: same bytes, new timestamp and signature);
    - ``bad_signature``: the signature is for a different key;
    - ``stale``: the timestamp is an hour old (outside any sane replay window);
    - ``timestamp_offset``: shift the timestamp by this many seconds (negative = past).
    """
    ts = now + timestamp_offset - (STALE_SECONDS if stale else 0)
    signing_key = key + "-wrong" if bad_signature else key
    first = sign_delivery(payload, key=signing_key, timestamp=ts)
    out = [first]
    if duplicate:
        out.append(sign_delivery(first.body, key=signing_key, timestamp=ts + 1))
    return out


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# (b) write-back API ----------------------------------------------------------------------------

Applier = Callable[[dict[str, Any], dict[str, Any]], "str | None"]

INVOICE_PAYMENT_STATUSES: Final = frozenset(
    {"pending", "paid", "partiallyPaid", "cancelled", "partiallyCancelled", "badDebt", "debited"}
)


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to the next matching request instead of answering normally."""

    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0  # seconds to wait before answering (slow network / slow server)
    apply: bool = False  # apply the change before failing: "did it, then answered 500"


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # redacted
    body: Any
    authorized: bool


@dataclass
class XentralSimState:
    """The simulated instance: documents, the log of requests, queued faults."""

    token: str = "sim-token"  # noqa: S105 (simulator credential, not a real one)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    sales_orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[ReceivedRequest] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    served: int = 0

    def add_invoice(self, invoice_id: str, **fields: Any) -> dict[str, Any]:
        doc = {"id": invoice_id, "paymentStatus": "pending", "dunningSetManually": False}
        doc.update(fields)
        self.invoices[invoice_id] = doc
        return doc

    def add_sales_order(self, order_id: str, **fields: Any) -> dict[str, Any]:
        doc = {"id": order_id, "manualPaymentApproval": False}
        doc.update(fields)
        self.sales_orders[order_id] = doc
        return doc

    def fail_next(self, status: int = 503, *, times: int = 1, apply: bool = False) -> None:
        self.faults.extend(Fault(status=status, apply=apply) for _ in range(times))

    def throttle_next(self, retry_after: str = "1", *, times: int = 1) -> None:
        self.faults.extend(Fault(status=429, retry_after=retry_after) for _ in range(times))

    def slow_next(self, seconds: float, *, times: int = 1) -> None:
        self.faults.extend(Fault(status=200, delay=seconds) for _ in range(times))


def create_app(state: XentralSimState | None = None) -> Starlette:
    """An ASGI app simulating Xentral's v3 write-back endpoints; ``app.state.sim`` is the state."""
    sim = state or XentralSimState()

    async def invoice(request: Request) -> JSONResponse:
        return await _handle(sim, request, sim.invoices, _apply_invoice)

    async def sales_order(request: Request) -> JSONResponse:
        return await _handle(sim, request, sim.sales_orders, _apply_sales_order)

    app = Starlette(
        routes=[
            Route("/api/v3/invoices/{doc_id}", invoice, methods=["GET", "PATCH"]),
            Route("/api/v3/salesOrders/{doc_id}", sales_order, methods=["GET", "PATCH"]),
        ]
    )
    app.state.sim = sim
    return app


async def _handle(
    sim: XentralSimState,
    request: Request,
    docs: dict[str, dict[str, Any]],
    apply: Applier,
) -> JSONResponse:
    sim.served += 1
    raw = await request.body()
    body: Any = None
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
    authorized = request.headers.get("authorization") == f"Bearer {sim.token}"
    sim.received.append(
        ReceivedRequest(
            request.method,
            request.url.path,
            redact_headers(request.headers.items()),
            body,
            authorized,
        )
    )
    headers = {"x-request-id": f"sim-{sim.served}"}
    if not authorized:
        return JSONResponse({"message": "Unauthenticated."}, 401, headers=headers)
    fault = sim.faults.popleft() if sim.faults else None
    if fault is not None and fault.delay:
        await anyio.sleep(fault.delay)
    if fault is not None and fault.status >= 300:
        if fault.apply and request.method == "PATCH":
            _patch(docs, request, body, apply)
        if fault.retry_after is not None:
            headers["retry-after"] = fault.retry_after
        return JSONResponse({"message": "simulated fault"}, fault.status, headers=headers)
    if request.method == "GET":
        doc = docs.get(request.path_params["doc_id"])
        if doc is None:
            return JSONResponse({"message": "Not found."}, 404, headers=headers)
        return JSONResponse({"data": doc}, 200, headers=headers)
    return _patch(docs, request, body, apply, headers)


def _patch(
    docs: dict[str, dict[str, Any]],
    request: Request,
    body: Any,
    apply: Applier,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    doc = docs.get(request.path_params["doc_id"])
    if doc is None:
        return JSONResponse({"message": "Not found."}, 404, headers=headers)
    if not isinstance(body, dict):
        return JSONResponse(
            {"message": "The request body must be an object."}, 400, headers=headers
        )
    error = apply(doc, body)
    if error is not None:
        return JSONResponse({"message": error}, 422, headers=headers)
    return JSONResponse({"data": doc}, 200, headers=headers)


def _apply_invoice(doc: dict[str, Any], body: dict[str, Any]) -> str | None:
    manual = body.get("dunningManualSettings")
    if manual is not None:
        if not isinstance(manual, dict):
            return "dunningManualSettings must be an object"
        status = manual.get("paymentStatus")
        if status is not None and status not in INVOICE_PAYMENT_STATUSES:
            return "dunningManualSettings.paymentStatus is invalid"
        settings = dict(doc.get("dunningManualSettings") or {})
        settings.update(
            {
                k: manual[k]
                for k in ("paymentStatus", "paidAt", "actualAmount", "discountGiven")
                if k in manual
            }
        )
        doc["dunningManualSettings"] = settings
    if "dunningSetManually" in body:
        doc["dunningSetManually"] = bool(body["dunningSetManually"])
    if doc.get("dunningSetManually") and "paymentStatus" in doc.get("dunningManualSettings", {}):
        doc["paymentStatus"] = doc["dunningManualSettings"]["paymentStatus"]
    return None


def _apply_sales_order(doc: dict[str, Any], body: dict[str, Any]) -> str | None:
    if "manualPaymentApproval" in body:
        if not isinstance(body["manualPaymentApproval"], bool):
            return "manualPaymentApproval must be a boolean"
        doc["manualPaymentApproval"] = body["manualPaymentApproval"]
    return None
