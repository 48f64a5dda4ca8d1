"""Request and response bodies of the payments API, and how a payment is rendered.

Input models are strict: unknown fields are rejected (a typo must not be silently dropped),
``amount`` is a JSON integer in minor units (a bool, a float such as ``12.0`` or a string is
refused: minor units are never fractional and no conversion is guessed), ``currency`` is an
upper-case ISO 4217 code the bridge can pay in.

Free-text fields (``reference``, ``metadata`` keys and values, a refund's ``reason``, terminal
input ``text``) refuse card data: a PAN-shaped value (a Luhn-valid run of 13 to 19 digits) or
track data is a 422 whose field error has type ``card_data`` and says why (DESIGN 2.6: no card
data at rest beyond a masked PAN; the terminal or the provider reads the card, never the API).

Responses are rendered by :func:`payment_json` straight to bytes (the stored idempotent
response must be byte-identical on replay); the pydantic response models exist for OpenAPI.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StrictStr,
)
from pydantic_core import PydanticCustomError

from tillbridge.domain.payments import Payment, Refund
from tillbridge.domain.states import Outcome
from tillbridge.domain.views import iso_utc as iso_utc  # re-exported for routers
from tillbridge.domain.views import payment_dict as payment_dict
from tillbridge.money import MAX_MINOR, is_currency
from tillbridge.observability.cards import has_card_data
from tillbridge.store.types import MAX_ROW_ID

#: Limits of ``metadata``: it is a label bag for the merchant, not a document store.
METADATA_MAX_KEYS: Final = 50
METADATA_MAX_KEY_CHARS: Final = 40
METADATA_MAX_BYTES: Final = 4096
METADATA_MAX_DEPTH: Final = 3


def _currency(value: str) -> str:
    if not is_currency(value):
        raise ValueError("not a supported ISO 4217 currency code (upper case, e.g. EUR)")
    return value


#: The message of a refused card number (the field error's type is ``card_data``).
CARD_DATA_MESSAGE: Final = (
    "looks like a card number (a Luhn-valid run of 13 to 19 digits) or card track data; "
    "never send card data to the bridge: the terminal or the provider reads the card"
)


def _card_data_error() -> PydanticCustomError:
    return PydanticCustomError("card_data", CARD_DATA_MESSAGE)


def _scalar_has_card_data(value: Any) -> bool:
    if isinstance(value, str):
        return has_card_data(value)
    if isinstance(value, bool):
        return False
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e20:
        value = int(value)
    return isinstance(value, int) and has_card_data(str(abs(value)))


def _has_card_data_anywhere(value: Any) -> bool:
    if isinstance(value, dict):
        return any(has_card_data(k) or _has_card_data_anywhere(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_card_data_anywhere(v) for v in value)
    return _scalar_has_card_data(value)


#: The message of an amount that is not an integer (the field error's type is ``minor_units``).
MINOR_UNITS_MESSAGE: Final = (
    'amounts are integers in minor units (cents): send 1234 for 12.34 EUR, never 12.34 or "1234"'
)


def _minor_units(value: Any) -> Any:
    """Before the integer check: a float, a string or a bool is a mistake worth explaining."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError("minor_units", MINOR_UNITS_MESSAGE)


#: Every API amount: ``Annotated[StrictInt, MinorUnits, Field(...)]``.
MinorUnits = BeforeValidator(_minor_units)


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    if has_card_data(value):
        raise _card_data_error()
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _metadata(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"at most {METADATA_MAX_KEYS} keys")
    for k in value:
        if not 1 <= len(k) <= METADATA_MAX_KEY_CHARS:
            raise ValueError(f"keys have 1 to {METADATA_MAX_KEY_CHARS} characters")
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    except ValueError:
        raise ValueError("numbers must be finite (no NaN or Infinity)") from None
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"at most {METADATA_MAX_BYTES} bytes as compact JSON")
    if _depth(value) > METADATA_MAX_DEPTH:
        raise ValueError(f"nested at most {METADATA_MAX_DEPTH} levels deep")
    if _has_card_data_anywhere(value):
        raise _card_data_error()
    return value


Currency = Annotated[
    StrictStr,
    Field(min_length=3, max_length=3, examples=["EUR"], description="ISO 4217, upper case"),
    AfterValidator(_currency),
]


class PaymentCreate(BaseModel):
    """Body of ``POST /v1/payments``."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[StrictInt, MinorUnits] = Field(
        gt=0, le=MAX_MINOR, description="Minor units (cents): 1234 is 12.34 EUR", examples=[1234]
    )
    currency: Currency
    reference: Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_printable)]
    connector: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    metadata: Annotated[dict[str, JsonValue], AfterValidator(_metadata)] = Field(
        default_factory=dict,
        description=(
            f"Up to {METADATA_MAX_KEYS} keys, {METADATA_MAX_BYTES} bytes as JSON, "
            f"{METADATA_MAX_DEPTH} levels deep"
        ),
    )


class PaymentOut(BaseModel):
    """A payment as the API shows it. Amounts in minor units; times ISO 8601 UTC."""

    id: str
    state: str
    amount: int
    currency: str
    reference: str
    connector: str
    metadata: dict[str, Any]
    captured_amount: int
    refunded_amount: int
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


class RefundCreate(BaseModel):
    """Body of ``POST /v1/payments/{id}/refunds``."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[StrictInt | None, MinorUnits] = Field(
        default=None,
        gt=0,
        le=MAX_MINOR,
        description="Minor units, in the payment's currency; omitted: all that is left",
        examples=[500],
    )
    reason: (
        Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_printable)] | None
    ) = None


class RefundOut(BaseModel):
    """A refund: ``status`` is pending until the connector's answer is known."""

    id: str
    payment_id: str
    status: str
    amount: int
    currency: str
    reason: str | None
    created_at: datetime


class RefundList(BaseModel):
    data: list[RefundOut]


def _iso_datetime(value: Any) -> Any:
    """ISO 8601 only: pydantic alone would also read ``0.5`` as a unix time (1970-01-01)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError(
        "datetime_iso", "Input should be an ISO 8601 date-time, such as 2026-12-01T10:00:00Z"
    )


#: A date-time query parameter: ISO 8601 text, nothing else.
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]


#: A row id in a path (inbox entries, deliveries): 1 to the largest BIGINT, so a larger one is
#: a 422 from validation, never an overflow in the database driver.
RowIdPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


#: The ``cursor`` query parameter of every listing (keyset pages, :mod:`tillbridge.store.keyset`).
#: Not length-checked here: a cursor that is not one of ours, whatever its length, is the one
#: answer 422 ``invalid_cursor``.
CursorParam = Annotated[
    str | None,
    Query(description="The previous page's `next_cursor`; omit it for the first page."),
]


class PaymentList(BaseModel):
    """One page of payments, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    data: list[PaymentOut]
    next_cursor: str | None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, the one encoding every response body uses."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def payment_json(p: Payment) -> bytes:
    return dumps(payment_dict(p))


_REFUND_STATUS: Final = {
    None: "pending",
    Outcome.PENDING: "pending",
    Outcome.UNKNOWN: "unknown",
    Outcome.SUCCEEDED: "succeeded",
    Outcome.DECLINED: "failed",
    Outcome.NOT_SENT: "failed",
}


def refund_dict(r: Refund) -> dict[str, Any]:
    return {
        "id": r.id,
        "payment_id": r.payment_id,
        "status": _REFUND_STATUS[r.outcome],
        "amount": r.amount.minor,
        "currency": r.amount.currency,
        "reason": r.reason,
        "created_at": iso_utc(r.created_at),
    }
