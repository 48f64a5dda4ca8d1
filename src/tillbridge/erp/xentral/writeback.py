"""Writing payment results back to Xentral through the Business Documents API v3.

Two calls exist for this (gateways.md section 3.3); there is no endpoint to post a payment
transaction itself:

- ``PATCH /api/v3/invoices/{id}`` with ``dunningSetManually: true`` and
  ``dunningManualSettings.{paymentStatus, paidAt, actualAmount, discountGiven}``;
- ``PATCH /api/v3/salesOrders/{id}`` with ``manualPaymentApproval: true``.

Both set absolute values, so repeating them is harmless: they are sent ``idempotent=True`` and the
outbound client may retry them after a timeout or a 5xx. Auth is a bearer token, sent per request
so the audit hook sees it redacted; it is never logged or shown in ``repr``.

Answers map to the exception tree: 401 ``AuthError``, 403 ``Forbidden``, 404 ``NotFound``, other
4xx ``ValidationError`` (will not succeed as sent), 429/5xx left after retries
:class:`XentralUnavailable` (retry the job later). Transport failures propagate unchanged
(``NotSent`` / ``OutcomeUnknown``), and because the calls are idempotent the job may simply run
again in both cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Final

import httpx2

from tillbridge.errors import (
    AuthError,
    ConfigError,
    Forbidden,
    NotFound,
    ValidationError,
    XentralUnavailable,
)
from tillbridge.money import Money
from tillbridge.outbound.client import OutboundClient

_ID_RE: Final = re.compile(r"^[0-9]{1,18}$")
GROUP: Final = "xentral-writeback"


class InvoicePaymentStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_PAID = "partiallyPaid"
    CANCELLED = "cancelled"
    PARTIALLY_CANCELLED = "partiallyCancelled"
    BAD_DEBT = "badDebt"
    DEBITED = "debited"


@dataclass(frozen=True, slots=True)
class WritebackResult:
    status: int
    resource: dict[str, Any] | None  # the updated document as Xentral returned it, if JSON
    provider_request_id: str | None


def money_json(money: Money) -> dict[str, str]:
    """Xentral's Money shape: ``{"amount": "13.37", "currency": "EUR"}`` (amount as a string)."""
    return {"amount": money.to_str(), "currency": money.currency}


def invoice_payment_patch(
    status: InvoicePaymentStatus,
    *,
    paid_at: date | None = None,
    actual_amount: Money | None = None,
    discount_given: Money | None = None,
) -> dict[str, Any]:
    """The PATCH body that sets an invoice's payment status manually. Pure."""
    settings: dict[str, Any] = {"paymentStatus": InvoicePaymentStatus(status).value}
    if paid_at is not None:
        settings["paidAt"] = paid_at.isoformat()
    if actual_amount is not None:
        settings["actualAmount"] = money_json(actual_amount)
    if discount_given is not None:
        settings["discountGiven"] = money_json(discount_given)
    return {"dunningSetManually": True, "dunningManualSettings": settings}


def sales_order_approval_patch() -> dict[str, Any]:
    """The PATCH body that approves a sales order's payment manually. Pure."""
    return {"manualPaymentApproval": True}


class XentralWriteback:
    """Write-back client for one Xentral instance.

    ``client`` must have the instance as ``base_url`` (``https://<id>.xentral.biz``). Each method
    is idempotent and may be called again after any failure.
    """

    def __init__(
        self, client: OutboundClient, *, token: str, call_class: str = "read", group: str = GROUP
    ) -> None:
        if not token:
            raise ConfigError("xentral write-back needs an API token")
        self._client = client
        self._authorization = f"Bearer {token}"
        self._call_class = call_class
        self._group = group

    def __repr__(self) -> str:
        return f"XentralWriteback(account={self._client.account!r})"

    async def set_invoice_payment_status(
        self,
        invoice_id: str | int,
        status: InvoicePaymentStatus,
        *,
        paid_at: date | None = None,
        actual_amount: Money | None = None,
        discount_given: Money | None = None,
    ) -> WritebackResult:
        """Mark invoice ``invoice_id`` with ``status`` (e.g. ``paid``) and the paid amount."""
        body = invoice_payment_patch(
            status, paid_at=paid_at, actual_amount=actual_amount, discount_given=discount_given
        )
        return await self._patch(f"/api/v3/invoices/{_doc_id(invoice_id)}", body)

    async def approve_sales_order_payment(self, sales_order_id: str | int) -> WritebackResult:
        """Set ``manualPaymentApproval`` on sales order ``sales_order_id``."""
        path = f"/api/v3/salesOrders/{_doc_id(sales_order_id)}"
        return await self._patch(path, sales_order_approval_patch())

    async def _patch(self, path: str, body: dict[str, Any]) -> WritebackResult:
        response = await self._client.request(
            "PATCH",
            path,
            call_class=self._call_class,
            group=self._group,
            # Absolute values: applying the same PATCH twice leaves the same document.
            idempotent=True,
            json=body,
            headers={"authorization": self._authorization, "accept": "application/json"},
        )
        return _result(response, path)


def _result(response: httpx2.Response, path: str) -> WritebackResult:
    status = response.status_code
    request_id = response.headers.get("x-request-id")
    details: dict[str, Any] = {"status": status, "path": path}
    if request_id:
        details["provider_request_id"] = request_id[:200]
    if 200 <= status < 300:
        return WritebackResult(status, _json_object(response), request_id)
    if status == 401:
        raise AuthError("xentral rejected the API token", **details)
    if status == 403:
        raise Forbidden("the xentral API token lacks the scope for this write-back", **details)
    if status == 404:
        raise NotFound("xentral document not found", **details)
    if status == 429 or status >= 500:
        retry_after = response.headers.get("retry-after")
        if retry_after:
            details["retry_after"] = retry_after[:64]  # raw header: seconds or an HTTP-date
        raise XentralUnavailable(f"xentral answered {status}; retry later", **details)
    if 300 <= status < 400:
        raise ConfigError(
            "xentral answered with a redirect; check the instance base URL", **details
        )
    raise ValidationError(f"xentral refused the write-back ({status})", **details)


def _json_object(response: httpx2.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _doc_id(value: str | int) -> str:
    # Ids go into the URL path: only plain digits, so nothing can steer the request elsewhere.
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not _ID_RE.match(text):
        raise ValidationError("xentral document id must be a positive integer")
    return text
