"""Xentral POS card-payment events to a frozen, validated value.

Xentral POS emits an event when the cashier selects "card" (gateways.md section 3.2). The
published catalogue calls it ``pos.cardPaymentCaptured``; an older integration guide calls it
``pos.paymentCreditCardCaptured`` and shows a slightly different body. Both are accepted:

====================  =============================  ==================================
meaning               documented field               seed-guide variant
====================  =============================  ==================================
purchase / refund     ``operation``: sell            ``operation``: sale / refund
                      / cancellation
register              ``project.id`` (int)           ``project.id`` (uuid), ``.number``
amount                ``totalAmount`` + ``tip``      ``amount`` (no tip)
====================  =============================  ==================================

Webhook deliveries wrap the body in ``{"type": "com.xentral.<event>.v<N>", "body": {...}}``; a
bare body is accepted too. The event is a request to *start* a terminal payment, not proof that
money moved.

Contract of :func:`parse_event`: pure, deterministic; returns :class:`XentralCardPayment` for a
card-payment event, :class:`UnsupportedXentralEvent` for any other event type (store and
acknowledge, do not process); raises :class:`~tillbridge.errors.ValidationError` (or its
``MoneyError`` leaf) with a message naming the field for anything malformed. Amounts are
converted exactly or rejected, never rounded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from tillbridge.errors import MoneyError, ValidationError
from tillbridge.money import Money

CARD_PAYMENT_EVENTS: Final = frozenset({"pos.cardPaymentCaptured", "pos.paymentCreditCardCaptured"})

_TYPE_RE: Final = re.compile(
    r"^(?:com\.xentral\.)?(?P<name>[A-Za-z0-9_.]+?)(?:\.v(?P<ver>\d{1,4}))?$"
)
_CURRENCY_RE: Final = re.compile(r"^[A-Z]{3}$")
_MAX_TEXT: Final = 255


class PaymentKind(StrEnum):
    PURCHASE = "purchase"
    REFUND = "refund"


class TerminalMode(StrEnum):
    NO_TERMINAL_INTEGRATION = "no_terminal_integration"
    SEND_TO_TERMINAL_MANUAL_CONFIRMATION = "send_to_terminal_manual_confirmation"
    SEND_AND_RECEIVE_AUTOMATIC = "send_and_receive_automatic"


class DocumentType(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


_DOCUMENT_TYPES: Final = frozenset(d.value for d in DocumentType)

_OPERATIONS: Final = {
    "sell": PaymentKind.PURCHASE,  # documented
    "sale": PaymentKind.PURCHASE,  # seed guide
    "cancellation": PaymentKind.REFUND,  # documented
    "refund": PaymentKind.REFUND,  # seed guide
}


@dataclass(frozen=True, slots=True)
class XentralCardPayment:
    """A validated card-payment request from Xentral POS.

    ``amount`` is ``totalAmount`` (or the seed's ``amount``) and ``tip`` the separate tip, both
    positive and in ``currency``; :attr:`charge` is what the terminal is asked to take. Whether
    Xentral's ``totalAmount`` already includes the tip is not documented; we assume it does not.
    """

    event_type: str
    event_version: int | None
    kind: PaymentKind
    amount: Money
    tip: Money
    project_id: str | None
    project_number: str | None
    document_number: str
    document_type: DocumentType
    payment_method: str | None
    created_at: datetime
    terminal_mode: TerminalMode | None
    guid: str | None
    event_id: str | None

    @property
    def charge(self) -> Money:
        return self.amount + self.tip

    @property
    def starts_terminal_payment(self) -> bool:
        """True when the bridge should drive the terminal (automatic mode, or mode not sent)."""
        return self.terminal_mode in (None, TerminalMode.SEND_AND_RECEIVE_AUTOMATIC)

    @property
    def payment_reference(self) -> str:
        """Stable reference of the ERP document: ``"invoice:40001234"``."""
        return f"{self.document_type.value}:{self.document_number}"

    @property
    def project_key(self) -> str:
        """The register to route to: the project id, else its number."""
        return self.project_id if self.project_id is not None else f"number:{self.project_number}"


@dataclass(frozen=True, slots=True)
class UnsupportedXentralEvent:
    """An event type this bridge does not process: store it, acknowledge it, leave it."""

    event_type: str
    event_version: int | None
    event_id: str | None


XentralEvent = XentralCardPayment | UnsupportedXentralEvent


def parse_event_bytes(raw_body: bytes, *, event_type: str | None = None) -> XentralEvent:
    """Parse a verified raw body. Floats are read as ``Decimal`` so amounts stay exact."""
    try:
        data = json.loads(raw_body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("xentral event: body is not valid JSON") from None
    return parse_event(data, event_type=event_type)


def parse_event(data: object, *, event_type: str | None = None) -> XentralEvent:
    """Map a parsed Xentral event (enveloped or bare) to a value; see the module docstring.

    ``event_type`` names the event of a bare body when the caller knows it (for example from the
    endpoint it arrived on). A bare body without a hint is treated as a card payment if it has an
    ``operation`` field, else as unsupported.
    """
    if not isinstance(data, Mapping):
        raise ValidationError("xentral event: expected a JSON object")
    event_id = _event_id(data.get("id"))
    if "type" in data and "body" in data:
        name, version = _split_type(data["type"])
        body = data["body"]
        if not isinstance(body, Mapping):
            raise ValidationError("xentral event: 'body' must be an object")
    else:
        body = data
        name, version = _split_type(event_type) if event_type else ("", None)
        if not name:
            name = "pos.cardPaymentCaptured" if "operation" in body else "unknown"
    if name not in CARD_PAYMENT_EVENTS:
        return UnsupportedXentralEvent(name, version, event_id)
    return _card_payment(body, name, version, event_id)


def _card_payment(
    body: Mapping[str, Any], name: str, version: int | None, event_id: str | None
) -> XentralCardPayment:
    operation = body.get("operation")
    # isinstance first: a list or object here must be a ValidationError, not a TypeError.
    if not isinstance(operation, str) or operation not in _OPERATIONS:
        raise ValidationError(
            f"xentral event: 'operation' must be one of {sorted(_OPERATIONS)}, got {operation!r}"
        )
    kind = _OPERATIONS[operation]

    currency = body.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        raise ValidationError("xentral event: 'currency' must be a 3-letter upper-case code")

    amount = _amount(body, currency, kind)
    tip = _money(body.get("tip", 0), currency, "tip", kind, allow_zero=True)
    if not (amount + tip).is_positive():
        raise ValidationError("xentral event: nothing to charge (amount plus tip is zero)")

    project_id, project_number = _project(body.get("project"))
    doc_type_raw = body.get("documentType")
    if not isinstance(doc_type_raw, str) or doc_type_raw not in _DOCUMENT_TYPES:
        raise ValidationError(
            f"xentral event: 'documentType' must be invoice or credit_note, got {doc_type_raw!r}"
        )
    document_type = DocumentType(doc_type_raw)

    return XentralCardPayment(
        event_type=name,
        event_version=version,
        kind=kind,
        amount=amount,
        tip=tip,
        project_id=project_id,
        project_number=project_number,
        document_number=_required_text(body, "documentNumber"),
        document_type=document_type,
        payment_method=_optional_text(body, "paymentMethod"),
        created_at=_timestamp(body.get("createdAt")),
        terminal_mode=_terminal_mode(body.get("settings")),
        guid=_optional_text(body, "guid"),
        event_id=event_id,
    )


def _amount(body: Mapping[str, Any], currency: str, kind: PaymentKind) -> Money:
    has_total, has_amount = "totalAmount" in body, "amount" in body
    if not has_total and not has_amount:
        raise ValidationError("xentral event: 'totalAmount' is required")
    if not has_total:
        return _money(body["amount"], currency, "amount", kind)
    total = _money(body["totalAmount"], currency, "totalAmount", kind)
    if has_amount and _money(body["amount"], currency, "amount", kind) != total:
        raise ValidationError("xentral event: 'totalAmount' and 'amount' disagree")
    return total


def _money(
    value: object, currency: str, field: str, kind: PaymentKind, *, allow_zero: bool = False
) -> Money:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ValidationError(f"xentral event: {field!r} must be a number")
    try:
        money = Money.of(value, currency)
    except MoneyError as exc:
        raise MoneyError(f"xentral event: {field!r}: {exc.message}", code=exc.code) from None
    if money.minor < 0:
        # Credit notes may carry signed amounts; a negative sale is never valid.
        if kind is not PaymentKind.REFUND:
            raise ValidationError(f"xentral event: {field!r} must not be negative for a sale")
        money = Money(-money.minor, currency)
    if money.minor == 0 and not allow_zero:
        raise ValidationError(f"xentral event: {field!r} must not be zero")
    return money


def _project(value: object) -> tuple[str | None, str | None]:
    if not isinstance(value, Mapping):
        raise ValidationError("xentral event: 'project' must be an object with 'id' or 'number'")
    raw_id, raw_number = value.get("id"), value.get("number")
    project_id: str | None = None
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        project_id = str(raw_id)
    elif isinstance(raw_id, str) and raw_id.strip():
        project_id = _bounded(raw_id.strip(), "project.id")
    elif raw_id is not None:
        raise ValidationError("xentral event: 'project.id' must be an integer or a string")
    number: str | None = None
    if isinstance(raw_number, str) and raw_number.strip():
        number = _bounded(raw_number.strip(), "project.number")
    elif raw_number is not None:
        raise ValidationError("xentral event: 'project.number' must be a string")
    if project_id is None and number is None:
        raise ValidationError("xentral event: 'project' needs an 'id' or a 'number'")
    return project_id, number


def _terminal_mode(settings: object) -> TerminalMode | None:
    if settings is None:
        return None
    if not isinstance(settings, Mapping):
        raise ValidationError("xentral event: 'settings' must be an object")
    raw = settings.get("terminalMode")
    if raw is None:
        return None
    try:
        return TerminalMode(raw)
    except ValueError:
        raise ValidationError(f"xentral event: unknown 'settings.terminalMode' {raw!r}") from None


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValidationError("xentral event: 'createdAt' must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"xentral event: 'createdAt' is not a date-time: {value!r}") from None
    if parsed.tzinfo is None:
        raise ValidationError("xentral event: 'createdAt' must carry a UTC offset")
    return parsed


def _split_type(value: object) -> tuple[str, int | None]:
    if not isinstance(value, str) or not value:
        raise ValidationError("xentral event: 'type' must be a non-empty string")
    match = _TYPE_RE.match(value)
    if match is None:
        raise ValidationError(f"xentral event: malformed event type {value[:80]!r}")
    ver = match.group("ver")
    return match.group("name"), int(ver) if ver else None


def _required_text(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # document numbers are strings, but a numeric one is unambiguous
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"xentral event: {field!r} is required and must be a string")
    return _bounded(value.strip(), field)


def _optional_text(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"xentral event: {field!r} must be a string or null")
    return _bounded(value, field) if value else None


def _event_id(value: object) -> str | None:
    """The envelope's event id, if Xentral ever sends one (the documented envelope has none)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return _bounded(value, "id")
    if value is None:
        return None
    raise ValidationError("xentral event: 'id' must be a string or an integer")


def _bounded(value: str, field: str) -> str:
    if len(value) > _MAX_TEXT:
        raise ValidationError(f"xentral event: {field!r} is longer than {_MAX_TEXT} characters")
    return value
