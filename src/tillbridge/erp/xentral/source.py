"""Xentral POS as a payment source: the processor of inbox rows of source ``xentral``.

What each stored event becomes:

===================================================  =============================================
event                                                result (inbox status)
===================================================  =============================================
body not a valid card-payment event, amount not      ``invalid``: stored, never retried
exact for the currency
an event type other than ``pos.cardPaymentCaptured`` ``ignored``: stored and acknowledged only
(or the older ``pos.paymentCreditCardCaptured``)
``settings.terminalMode`` other than                 ``recorded``: Xentral does not want the
``send_and_receive_automatic``                       bridge to drive the terminal
``cancellation`` / ``refund``                        ``recorded``: refunds from Xentral POS are not
                                                     supported yet (the prior payment is named)
``project`` maps to no register                      dead letter (fix the config, then replay)
``sell`` / ``sale``                                  ``processed``: a payment of ``totalAmount +
                                                     tip`` on the register's terminal
===================================================  =============================================

The register is the one whose ``xentral_project`` equals the event's ``project.id`` or
``project.number``. Its ``terminal`` names the payment's connector when such a connector exists;
otherwise, only where ``[connectors.fake]`` is configured on purpose, the payment runs on the
``fake`` sandbox and says so in ``metadata.connector_fallback``; without it the event is
dead-lettered with the fix (see :meth:`XentralPosSource.connector_for`).

Exactly once: the payment, the link row (unique per inbox row, per Xentral ``guid`` when there
is one, and per the money asked for), the row's status and the job's completion commit in one
transaction. Running the job again, or replaying the row, finds the link and creates nothing. A
second event for the same money (same register, operation, document and amount), whatever its
bytes and with or without a ``guid``, is settled ``duplicate`` naming the first payment, unless
that payment ended without moving money (see :mod:`tillbridge.erp.xentral.charges`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import structlog
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.audit.log import record as audit_record
from tillbridge.config import MerchantConfig
from tillbridge.domain.states import OperationKind
from tillbridge.erp.xentral.charges import charge_key, find_duplicate, operation_of
from tillbridge.erp.xentral.mapping import (
    PaymentKind,
    UnsupportedXentralEvent,
    XentralCardPayment,
    parse_event_bytes,
)
from tillbridge.erp.xentral.tables import xentral_pos_payments
from tillbridge.errors import PermanentFailure, ValidationError
from tillbridge.inbound import inbox
from tillbridge.inbound.inbox import InboxItem
from tillbridge.inbound.tables import DUPLICATE, IGNORED, INVALID, PROCESSED, RECORDED
from tillbridge.payments.engine import NewPayment, PaymentEngine
from tillbridge.queue import JobContext

log = structlog.get_logger("tillbridge.xentral")

SOURCE: Final = "xentral"
FALLBACK_CONNECTOR: Final = "fake"
REFUND_NOT_SUPPORTED: Final = (
    "refunds are not supported at a register without a terminal: refund at a terminal, then "
    "record it in Xentral"
)


def _extensions(raw_body: bytes) -> dict[str, str]:
    """Optional ids the documented event does not carry but an instance may add: the v3
    ``invoiceId`` and ``salesOrderId`` for the write-back (digits only)."""
    try:
        data = json.loads(raw_body)
    except ValueError:
        return {}
    body = data.get("body", data) if isinstance(data, dict) else {}
    out: dict[str, str] = {}
    if isinstance(body, dict):
        for key, meta in (
            ("invoiceId", "xentral_invoice_id"),
            ("salesOrderId", "xentral_order_id"),
        ):
            value = body.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                out[meta] = str(value)
            elif isinstance(value, str) and value.isdigit() and len(value) <= 18:
                out[meta] = value
    return out


class XentralSource:
    """Processes ``xentral`` inbox rows into payments; see the module docstring."""

    source = SOURCE

    def __init__(self, payments: PaymentEngine, config: MerchantConfig) -> None:
        self.payments = payments
        self.config = config

    def register_for(self, event: XentralCardPayment) -> str:
        """The register whose ``xentral_project`` is the event's project id or number."""
        keys = {k for k in (event.project_id, event.project_number) if k is not None}
        found = sorted(
            name for name, reg in self.config.registers.items() if reg.xentral_project in keys
        )
        if len(found) != 1:
            what = "no register maps" if not found else f"registers {', '.join(found)} all map"
            raise PermanentFailure(
                f"{what} xentral project {' / '.join(sorted(keys))}: set "
                "registers.<name>.xentral_project, restart, then `tillbridge webhooks replay`"
            )
        return found[0]

    def _register_or_none(self, event: XentralCardPayment) -> str | None:
        try:
            return self.register_for(event)
        except PermanentFailure:
            return None

    def connector_for(self, register: str) -> tuple[str, bool]:
        """``(connector, fallback)``: the register's terminal; the sandbox only if configured.

        A register without a terminal falls back to the ``fake`` sandbox only when the operator
        configured ``[connectors.fake]`` on purpose (a test installation). Otherwise the event
        is dead-lettered with the fix: silently "paying" on a sandbox would mark a real Xentral
        invoice paid with no money moved.
        """
        terminal = self.config.registers[register].terminal
        if terminal is not None and terminal in self.payments.connectors:
            return terminal, False
        if FALLBACK_CONNECTOR in self.config.connectors:
            return FALLBACK_CONNECTOR, True
        raise PermanentFailure(
            f"register {register} has no terminal the bridge can drive: set "
            f"registers.{register}.terminal (or configure [connectors.fake] for a test "
            "installation), restart, then `tillbridge webhooks replay`"
        )

    async def process(self, ctx: JobContext, item: InboxItem) -> None:
        """Process one row; idempotent and exactly once (see the module docstring)."""
        try:
            event = parse_event_bytes(item.raw_body)
        except ValidationError as exc:  # MoneyError included: never rounded, never retried
            await self._settle(ctx, item, INVALID, None, {"code": exc.code}, error=exc.message)
            return
        if isinstance(event, UnsupportedXentralEvent):
            ignored = {"reason": f"event type {event.event_type} is not processed"}
            await self._settle(ctx, item, IGNORED, event.event_type, ignored)
            return
        if not event.starts_terminal_payment:
            # Recorded only: no register is needed, so an unmapped project is no error here.
            mode = event.terminal_mode.value if event.terminal_mode else None
            recorded = {
                "reason": f"terminal mode {mode}: not sent to a terminal",
                "register": self._register_or_none(event),
            }
            await self._settle(ctx, item, RECORDED, event.event_type, recorded)
            return
        if event.kind is PaymentKind.REFUND:
            register_or_none = self._register_or_none(event)
            if register_or_none is not None and self._has_terminal(register_or_none):
                # A card refund at the register: the terminal pays the amount back to the card.
                try:
                    await self._purchase(ctx, item, event, register_or_none, OperationKind.REFUND)
                except IntegrityError:  # a concurrent job for the same refund won; see below
                    await self._purchase(ctx, item, event, register_or_none, OperationKind.REFUND)
            else:
                await self._record_refund(ctx, item, event, register_or_none)
            return
        register = self.register_for(event)
        try:
            await self._purchase(ctx, item, event, register)
        except IntegrityError:
            # A concurrent job for the same POS payment (same guid, or the same money) committed
            # its link first; our transaction rolled back. Looking again finds it and settles
            # this row as duplicate.
            await self._purchase(ctx, item, event, register)

    def _has_terminal(self, register: str) -> bool:
        """True if the register's terminal is a connector that pays money back to a card."""
        terminal = self.config.registers[register].terminal
        c = self.payments.connectors.get(terminal) if terminal is not None else None
        return c is not None and c.capabilities.standalone_refund

    async def _purchase(
        self,
        ctx: JobContext,
        item: InboxItem,
        event: XentralCardPayment,
        register: str,
        kind: OperationKind = OperationKind.PURCHASE,
    ) -> None:
        connector, fallback = self.connector_for(register)
        async with ctx.transaction() as conn:
            link = await _link(conn, xentral_pos_payments.c.inbox_id == item.id)
            if link is not None:  # a replay, or a rerun after a lost completion
                result = {"payment_id": link, "register": register}
                await self._mark(ctx, conn, item, PROCESSED, event.event_type, result)
                return
            if event.guid is not None:
                earlier = await _link(
                    conn,
                    (xentral_pos_payments.c.account == item.account)
                    & (xentral_pos_payments.c.guid == event.guid),
                )
                if earlier is not None:
                    result = {"payment_id": earlier, "reason": f"same guid {event.guid}"}
                    await self._mark(ctx, conn, item, DUPLICATE, event.event_type, result)
                    return
            key = charge_key(register, event)
            same_money = await find_duplicate(conn, item.account, key)
            if same_money is not None:
                result = {"payment_id": same_money.payment_id, "reason": same_money.reason}
                log.warning(
                    "xentral.duplicate_charge_refused",
                    inbox_id=item.id,
                    payment_id=same_money.payment_id,
                    charge_key=key,
                )
                await self._mark(ctx, conn, item, DUPLICATE, event.event_type, result)
                return
            metadata: dict[str, Any] = {
                "source": SOURCE,
                "xentral_account": item.account,
                "xentral_inbox_id": item.id,
                "register": register,
                "document_type": event.document_type.value,
                "document_number": event.document_number,
                "tip": event.tip.minor,
                **_extensions(item.raw_body),
            }
            if fallback:
                metadata["connector_fallback"] = FALLBACK_CONNECTOR
            payment = await self.payments.create(
                conn,
                NewPayment(
                    amount=event.charge,
                    reference=event.payment_reference,
                    connector=connector,
                    metadata=metadata,
                    kind=kind,
                ),
                actor=f"webhook:{SOURCE}/{item.account}",
                idempotency_key=None,
            )
            await conn.execute(
                insert(xentral_pos_payments).values(
                    inbox_id=item.id,
                    payment_id=payment.id,
                    account=item.account,
                    register=register,
                    guid=event.guid,
                    document_type=event.document_type.value,
                    document_number=event.document_number,
                    operation=operation_of(event),
                    amount_minor=event.charge.minor,
                    currency=event.charge.currency,
                    charge_key=key,
                    created_at=ctx.now(),
                )
            )
            result = {"payment_id": payment.id, "register": register, "connector": connector}
            if fallback:
                log.warning(
                    "xentral.fake_connector_used",
                    payment_id=payment.id,
                    register=register,
                    hint="the register's terminal is not a connector yet: no money moves",
                )
            await self._mark(ctx, conn, item, PROCESSED, event.event_type, result)

    async def _record_refund(
        self, ctx: JobContext, item: InboxItem, event: XentralCardPayment, register: str | None
    ) -> None:
        async with ctx.transaction() as conn:
            original = await _link(
                conn,
                (xentral_pos_payments.c.account == item.account)
                & (xentral_pos_payments.c.document_number == event.document_number),
            )
            result = {
                "reason": REFUND_NOT_SUPPORTED,
                "register": register,
                "amount": event.charge.minor,
                "currency": event.charge.currency,
                "original_payment_id": original,
            }
            await audit_record(
                conn,
                action="xentral.refund_not_supported",
                actor=f"webhook:{SOURCE}/{item.account}",
                subject_type="webhook_inbox",
                subject_id=str(item.id),
                payload=result,
                redactor=self.payments.redactor,
            )
            await self._mark(ctx, conn, item, RECORDED, event.event_type, result)

    async def _settle(
        self,
        ctx: JobContext,
        item: InboxItem,
        status: str,
        event_type: str | None,
        result: Mapping[str, Any] | None,
        *,
        error: str | None = None,
    ) -> None:
        async with ctx.transaction() as conn:
            await self._mark(ctx, conn, item, status, event_type, result, error=error)

    async def _mark(
        self,
        ctx: JobContext,
        conn: AsyncConnection,
        item: InboxItem,
        status: str,
        event_type: str | None,
        result: Mapping[str, Any] | None,
        *,
        error: str | None = None,
    ) -> None:
        await inbox.settle(
            conn,
            item.id,
            status,
            now=ctx.now(),
            attempt=ctx.attempt,
            event_type=event_type,
            result=result,
            error=error,
        )


async def _link(conn: AsyncConnection, where: Any) -> str | None:
    """The payment id of the first link row matching ``where``."""
    stmt = (
        select(xentral_pos_payments.c.payment_id)
        .where(where)
        .order_by(xentral_pos_payments.c.id)
        .limit(1)
    )
    value = (await conn.execute(stmt)).scalar_one_or_none()
    return None if value is None else str(value)
