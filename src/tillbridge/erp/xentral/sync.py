"""Writing payment results back to Xentral: a payment listener plus the ``xentral.writeback`` job.

When a payment that came from Xentral POS (``metadata.source == "xentral"``) is captured, the
listener enqueues one write-back job in the transaction of that state change (no dual write).
The job, through the account's :class:`~tillbridge.outbound.OutboundClient` (breaker, audit log):

* sets the invoice's ``paymentStatus`` to ``paid`` with ``paidAt`` and ``actualAmount``
  (``PATCH /api/v3/invoices/{id}``), for events whose ``documentType`` is ``invoice``;
* approves the sales order's payment (``PATCH /api/v3/salesOrders/{id}``) when the event named
  one (``salesOrderId``).

The invoice id is the event's ``invoiceId`` when present, else its ``documentNumber`` (the
documented event carries only the number; see docs/xentral.md). Declined, failed and unknown
payments write nothing: the invoice stays as it is and the cashier sees the result in the POS.

Both PATCHes set absolute values, so the job is safe to run again. Failures: 429/5xx and
transport errors (including an open breaker) are retried later, honouring ``Retry-After``; an
answer that will never succeed (401, 403, 404, 422, a redirect, a non-numeric id) dead-letters at
once; after :data:`WRITEBACK_RETRY` ``.max_attempts`` the job is dead, visible in
``tillbridge jobs list --status dead`` and retryable with ``tillbridge jobs retry``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.audit.log import record as audit_record
from tillbridge.domain.payments import Payment
from tillbridge.domain.states import PaymentState
from tillbridge.erp.xentral.writeback import InvoicePaymentStatus, XentralWriteback
from tillbridge.errors import (
    BridgeError,
    ConfigError,
    PermanentFailure,
    RetryLater,
    TransportError,
    XentralUnavailable,
)
from tillbridge.money import Money
from tillbridge.outbound import OutboundHub, parse_retry_after
from tillbridge.queue import JobContext, enqueue
from tillbridge.retry import RetryPolicy
from tillbridge.store import payments_repo
from tillbridge.store.db import Database

log = structlog.get_logger("tillbridge.xentral")

WRITEBACK_JOB: Final = "xentral.writeback"
WRITEBACK_RETRY: Final = RetryPolicy(
    max_attempts=8, base_delay=timedelta(seconds=10), max_delay=timedelta(hours=1)
)


def account_key(account: str) -> str:
    """The outbound account (breaker and audit subject) of a Xentral instance."""
    return f"xentral:{account}"


async def writeback_listener(
    conn: AsyncConnection, payment: Payment, previous: PaymentState | None
) -> None:
    """Payment listener: enqueue the write-back when a Xentral payment becomes captured."""
    if payment.state != PaymentState.CAPTURED or previous == PaymentState.CAPTURED:
        return
    if payment.metadata.get("source") != "xentral":
        return
    await enqueue(
        conn,
        WRITEBACK_JOB,
        {"payment_id": payment.id},
        dedupe_key=f"{WRITEBACK_JOB}:{payment.id}:captured",
    )


class XentralSync:
    """Runs write-back jobs against the configured Xentral instances."""

    def __init__(self, db: Database, accounts: Mapping[str, Any], hub: OutboundHub) -> None:
        self.db = db
        #: account name -> its ``XentralConfig`` (url, api_key).
        self.accounts = dict(accounts)
        self.hub = hub
        self._clients: dict[str, XentralWriteback] = {}

    def writeback(self, account: str) -> XentralWriteback:
        """The write-back client of ``account`` (built on first use)."""
        existing = self._clients.get(account)
        if existing is not None:
            return existing
        erp = self.accounts.get(account)
        if erp is None:
            raise ConfigError(f"no erp entry of type xentral named {account!r}")
        client = self.hub.client(account_key(account), base_url=str(erp.url).rstrip("/"))
        created = XentralWriteback(client, token=erp.api_key.resolve())
        self._clients[account] = created
        return created

    async def run(self, ctx: JobContext) -> None:
        """The ``xentral.writeback`` handler; see the module docstring. Safe to run again."""
        payment_id = str(ctx.payload["payment_id"])
        async with self.db.read() as conn:
            payment = await payments_repo.get_payment(conn, payment_id)
        meta = payment.metadata
        account = str(meta.get("xentral_account", ""))
        done: list[str] = []
        try:
            wb = self.writeback(account)
            invoice_id = meta.get("xentral_invoice_id") or (
                meta.get("document_number") if meta.get("document_type") == "invoice" else None
            )
            if invoice_id is not None:
                await wb.set_invoice_payment_status(
                    str(invoice_id),
                    InvoicePaymentStatus.PAID,
                    paid_at=payment.updated_at.date(),
                    actual_amount=Money(payment.captured_minor, payment.currency),
                )
                done.append(f"invoice {invoice_id} paid")
            order_id = meta.get("xentral_order_id")
            if order_id is not None:
                await wb.approve_sales_order_payment(str(order_id))
                done.append(f"sales order {order_id} payment approved")
        except XentralUnavailable as exc:
            after = parse_retry_after(str(exc.details.get("retry_after") or ""), now=time.time())
            raise RetryLater(exc.message, after=after) from exc
        except TransportError as exc:  # NotSent (breaker open included), OutcomeUnknown
            raise RetryLater(exc.message) from exc
        except BridgeError as exc:  # 401/403/404/4xx/redirect/bad id/config: retrying cannot help
            raise PermanentFailure(f"xentral write-back refused: {exc.message}") from exc
        async with ctx.transaction() as conn:
            await audit_record(
                conn,
                action="xentral.written_back",
                actor="worker",
                subject_type="payment",
                subject_id=payment.id,
                payload={"account": account, "done": done},
                redactor=self.hub.redactor,
            )
        log.info("xentral.written_back", payment_id=payment.id, account=account, done=done)

    async def aclose(self) -> None:
        self._clients.clear()
