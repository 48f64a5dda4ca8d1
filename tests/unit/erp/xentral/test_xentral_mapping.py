"""Xentral POS card-payment mapping: documented event, seed variant, bad payloads, exactness."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillbridge.erp.xentral import (
    DocumentType,
    PaymentKind,
    TerminalMode,
    UnsupportedXentralEvent,
    XentralCardPayment,
    parse_event,
    parse_event_bytes,
)
from tillbridge.errors import MoneyError, ValidationError
from tillbridge.money import Money
from tillbridge.simulators import xentral as sim

DOCUMENTED: dict[str, Any] = {
    "operation": "sell",
    "project": {"id": 1},
    "currency": "EUR",
    "totalAmount": 25.9,
    "tip": 2.0,
    "documentNumber": "RE-40001234",
    "documentType": "invoice",
    "paymentMethod": "ec-karte",
    "guid": "7d3c0e9a",
    "createdAt": "2025-06-11T15:32:00+02:00",
    "settings": {"terminalMode": "send_and_receive_automatic"},
}

# The seed guide's example body, verbatim in shape.
SEED: dict[str, Any] = {
    "operation": "sale",
    "project": {"id": "3f942a4b-728c-4c1b-8c7c-3499f28744a1", "number": "POS-01"},
    "currency": "EUR",
    "amount": 25.90,
    "documentNumber": "40001234",
    "documentType": "invoice",
    "createdAt": "2025-06-11T15:32:00+02:00",
}


def doc(**changes: Any) -> dict[str, Any]:
    body = dict(DOCUMENTED)
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def wrapped(body: dict[str, Any], event: str = "pos.cardPaymentCaptured") -> dict[str, Any]:
    return {"type": f"com.xentral.{event}.v1", "body": body}


def card(data: object, **kwargs: Any) -> XentralCardPayment:
    result = parse_event(data, **kwargs)
    assert isinstance(result, XentralCardPayment)
    return result


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # documented event in its webhook envelope: amount and tip stay separate
        (
            wrapped(DOCUMENTED),
            {
                "kind": PaymentKind.PURCHASE,
                "amount": Money(2590, "EUR"),
                "tip": Money(200, "EUR"),
                "charge": Money(2790, "EUR"),
                "project_id": "1",
                "event_version": 1,
                "terminal_mode": TerminalMode.SEND_AND_RECEIVE_AUTOMATIC,
                "starts_terminal_payment": True,
            },
        ),
        # documented cancellation is a refund
        (
            wrapped(doc(operation="cancellation", documentType="credit_note")),
            {
                "kind": PaymentKind.REFUND,
                "document_type": DocumentType.CREDIT_NOTE,
                "payment_reference": "credit_note:RE-40001234",
            },
        ),
        # seed variant, bare body: `amount`, no tip, uuid project with a number, no settings
        (
            SEED,
            {
                "event_type": "pos.cardPaymentCaptured",
                "kind": PaymentKind.PURCHASE,
                "amount": Money(2590, "EUR"),
                "tip": Money(0, "EUR"),
                "project_id": "3f942a4b-728c-4c1b-8c7c-3499f28744a1",
                "project_number": "POS-01",
                "terminal_mode": None,
                "starts_terminal_payment": True,
                "event_version": None,
            },
        ),
        # seed event name inside an envelope
        (
            wrapped(SEED, "pos.paymentCreditCardCaptured"),
            {"event_type": "pos.paymentCreditCardCaptured"},
        ),
        # seed refund operation
        ({**SEED, "operation": "refund"}, {"kind": PaymentKind.REFUND}),
        # the cashier confirms on the terminal by hand: the bridge must not start a payment
        (
            doc(settings={"terminalMode": "no_terminal_integration"}),
            {"starts_terminal_payment": False},
        ),
        (
            doc(settings={"terminalMode": "send_to_terminal_manual_confirmation"}),
            {"starts_terminal_payment": False},
        ),
        # settings present but terminal mode absent means automatic
        (doc(settings={}), {"terminal_mode": None, "starts_terminal_payment": True}),
        # zero-decimal currency
        (doc(currency="JPY", totalAmount=1500, tip=0), {"amount": Money(1500, "JPY")}),
        # three-decimal currency
        (doc(currency="KWD", totalAmount="1.234", tip=0), {"amount": Money(1234, "KWD")}),
        # a credit note may carry a signed amount; the refund amount is its magnitude
        (
            doc(operation="cancellation", totalAmount=-25.9, tip=0),
            {"kind": PaymentKind.REFUND, "amount": Money(2590, "EUR")},
        ),
        # register identified by number only
        (doc(project={"number": "POS-02"}), {"project_id": None, "project_key": "number:POS-02"}),
        # both amount spellings present and equal
        (doc(amount=25.9), {"amount": Money(2590, "EUR")}),
        # envelope type without a version suffix, and an envelope event id if one is ever sent
        (
            {"type": "pos.cardPaymentCaptured", "body": DOCUMENTED, "id": "evt-1"},
            {"event_version": None, "event_id": "evt-1"},
        ),
        # a numeric document number is unambiguous
        (doc(documentNumber=40001234), {"document_number": "40001234"}),
        # null guid
        (doc(guid=None), {"guid": None}),
    ],
)
def test_card_payment_mapping(payload: dict[str, Any], expected: dict[str, Any]) -> None:
    result = card(payload)
    for name, value in expected.items():
        assert getattr(result, name) == value, name


def test_created_at_keeps_its_offset() -> None:
    result = card(wrapped(DOCUMENTED))
    assert result.created_at == datetime(2025, 6, 11, 15, 32, tzinfo=timezone(timedelta(hours=2)))


@pytest.mark.parametrize(
    ("payload", "hint", "event_type"),
    [
        # a documented event we do not process: stored and acknowledged, not an error
        (
            wrapped({"salesOrderId": 169}, "salesOrder.protocolCreated"),
            None,
            "salesOrder.protocolCreated",
        ),
        # a bare body without `operation` and without a hint
        ({"invoiceId": 5}, None, "unknown"),
        # a bare body whose endpoint says what it is
        ({"invoiceId": 5}, "com.xentral.invoice.created.v2", "invoice.created"),
    ],
)
def test_unsupported_events(payload: dict[str, Any], hint: str | None, event_type: str) -> None:
    result = parse_event(payload, event_type=hint)
    assert isinstance(result, UnsupportedXentralEvent)
    assert result.event_type == event_type


def test_bare_body_with_a_card_hint() -> None:
    assert card(SEED, event_type="pos.paymentCreditCardCaptured").event_type == (
        "pos.paymentCreditCardCaptured"
    )


@pytest.mark.parametrize(
    ("payload", "error", "match"),
    [
        # not an object at all
        ([1, 2], ValidationError, "JSON object"),
        # envelope whose body is not an object
        ({"type": "com.xentral.pos.cardPaymentCaptured.v1", "body": "x"}, ValidationError, "body"),
        # envelope type of the wrong JSON type
        ({"type": 7, "body": {}}, ValidationError, "type"),
        ({"type": "com.xentral.pos/../x", "body": {}}, ValidationError, "malformed event type"),
        # operation missing, unknown, or not a string
        (doc(operation=...), ValidationError, "operation"),
        (doc(operation="void"), ValidationError, "operation"),
        (doc(operation=["sell"]), ValidationError, "operation"),
        # currency not upper-case ISO alpha, or not a payment currency
        (doc(currency="eur"), ValidationError, "currency"),
        (doc(currency=...), ValidationError, "currency"),
        (doc(currency="XYZ"), MoneyError, "currency"),
        # amounts that are not exact for the currency: an error, never a rounding
        (doc(totalAmount=25.999), MoneyError, "not exact"),
        (doc(currency="JPY", totalAmount=15.5, tip=0), MoneyError, "not exact"),
        (doc(tip=0.001), MoneyError, "tip"),
        (doc(totalAmount="NaN"), MoneyError, "totalAmount"),
        (doc(totalAmount=1e20), MoneyError, "too large"),
        # amounts of the wrong JSON type or missing
        (doc(totalAmount=True), ValidationError, "number"),
        (doc(totalAmount={"amount": 1}), ValidationError, "number"),
        (doc(totalAmount=...), ValidationError, "totalAmount"),
        # nothing to charge, or negative for a sale
        (doc(totalAmount=0, tip=0), ValidationError, "zero"),
        (doc(totalAmount=-5), ValidationError, "negative"),
        (doc(tip=-1), ValidationError, "negative"),
        # the two amount spellings disagree
        (doc(amount=30), ValidationError, "disagree"),
        # project missing, empty, or with ids of the wrong type
        (doc(project=...), ValidationError, "project"),
        (doc(project={}), ValidationError, "project"),
        (doc(project={"id": True}), ValidationError, "project.id"),
        (doc(project={"id": 1.5}), ValidationError, "project.id"),
        (doc(project={"number": 5}), ValidationError, "project.number"),
        # document reference missing, too long, or of an unknown type
        (doc(documentNumber=...), ValidationError, "documentNumber"),
        (doc(documentNumber="x" * 300), ValidationError, "longer"),
        (doc(documentType="order"), ValidationError, "documentType"),
        (doc(documentType=None), ValidationError, "documentType"),
        # creation time unparseable or without an offset
        (doc(createdAt="yesterday"), ValidationError, "createdAt"),
        (doc(createdAt="2025-06-11T15:32:00"), ValidationError, "offset"),
        (doc(createdAt=1718112720), ValidationError, "createdAt"),
        # unknown terminal mode or settings of the wrong type
        (doc(settings={"terminalMode": "auto"}), ValidationError, "terminalMode"),
        (doc(settings=["x"]), ValidationError, "settings"),
        # optional strings of the wrong type
        (doc(guid=12), ValidationError, "guid"),
        (
            {"type": "pos.cardPaymentCaptured", "body": DOCUMENTED, "id": [1]},
            ValidationError,
            "'id'",
        ),
    ],
)
def test_bad_payloads(payload: object, error: type[Exception], match: str) -> None:
    data = wrapped(payload) if isinstance(payload, dict) and "type" not in payload else payload
    with pytest.raises(error, match=match):
        parse_event(data)


def test_raw_bytes_keep_amounts_exact() -> None:
    # As a float this would read as 26.0 and be accepted; read as Decimal it is refused.
    raw = json.dumps(wrapped(doc(totalAmount=0))).replace(
        '"totalAmount": 0', '"totalAmount": 25.999999999999999999'
    )
    with pytest.raises(MoneyError):
        parse_event_bytes(raw.encode())
    result = parse_event_bytes(sim.encode(wrapped(DOCUMENTED)))
    assert isinstance(result, XentralCardPayment) and result.charge == Money(2790, "EUR")


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b""])
def test_raw_bytes_that_are_not_json(raw: bytes) -> None:
    with pytest.raises(ValidationError, match="not valid JSON"):
        parse_event_bytes(raw)


@given(
    minor=st.integers(min_value=1, max_value=10**13),
    tip=st.integers(min_value=0, max_value=10**6),
    currency=st.sampled_from(["EUR", "JPY", "KWD", "CHF"]),
    variant=st.sampled_from(["documented", "seed"]),
)
def test_simulator_events_round_trip_exactly(
    minor: int, tip: int, currency: str, variant: str
) -> None:
    body = sim.card_payment_body(
        Money(minor, currency),
        tip=Money(tip, currency),
        variant=variant,  # type: ignore[arg-type]
    )
    result = parse_event_bytes(sim.encode(sim.envelope(body)))
    assert isinstance(result, XentralCardPayment)
    assert result.amount == Money(minor, currency)
    assert result.tip == Money(tip if variant == "documented" else 0, currency)
