"""The one payment engine: create, execute, recover, apply, cancel, refund and resolve.

Every way money moves is a :class:`~tillbridge.payments.contract.Connector` that the engine
picks by name; what differs between a terminal and an online provider is its family's runtime
(:mod:`.families`). The order of events for any operation, and why:

1. **Create** commits, in one transaction, the payment (``created``), the operation with the
   ``echo_id`` the counterpart will echo, the family's own rows and a ``payment.execute`` job
   keyed by the counterpart's lease (a terminal: ``terminal:<id>``; online: ``payment:<id>``).
   Nothing has been sent (persist before you send; no dual writes). Capabilities are checked
   here, before anything is stored: a connector that cannot do it is a clear 4xx.
2. **Execute** (the job) holds the lease, then commits the operation as sent (``sent_at``; the
   payment ``in_progress``) together with the family's recovery evidence, and only then calls
   the connector. If the process dies after that commit, the job comes back and finds the
   operation sent without an outcome: it may have reached the counterpart, so it is **never
   sent again**; it becomes ``unknown`` and is recovered.
3. **Apply** commits the outcome: operation, payment state, refund totals, family evidence,
   audit and listeners (outgoing webhooks, ERP write-back) in one transaction. It is idempotent
   and is also the ``payment.apply`` job for results that arrive later (notifications).
4. **Recover** asks the counterpart about an ``unknown`` outcome (``query``), as the family's
   :class:`~tillbridge.payments.families.RecoveryPolicy` says: at once under the lease and/or
   after delays, each follow-up a ``payment.recover`` job on the same key. What recovery
   cannot settle goes to an operator (``payment.needs_operator`` with an instruction), who
   settles it with :meth:`PaymentEngine.resolve`, audited.

Jobs of one key never run at once, so two jobs of one terminal (or one online payment) never
interleave. Every job handler checks the persisted state before it acts and is safe to rerun.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.clock import Clock, utcnow
from tillbridge.domain.payments import Operation, Payment, Refund, new_id
from tillbridge.domain.states import OperationKind, Outcome, PaymentState
from tillbridge.errors import (
    BridgeError,
    ConcurrentUpdate,
    IllegalTransition,
    NotSent,
    NotSupported,
    TerminalBusy,
    ValidationError,
)
from tillbridge.money import Money
from tillbridge.observability.redaction import Redactor
from tillbridge.payments import jobs
from tillbridge.payments.contract import (
    BUSY_PREFIX,
    Connector,
    ConnectorResult,
)
from tillbridge.payments.families import FamilyRuntime, Lease, Snapshot
from tillbridge.payments.ledger import Ledger, PaymentListener, is_primary
from tillbridge.payments.recovery import Recovery
from tillbridge.queue import RetryLater, enqueue
from tillbridge.store import payments_repo as repo
from tillbridge.store.db import Database

log = structlog.get_logger("tillbridge.payments")


@dataclass(frozen=True, slots=True)
class NewPayment:
    amount: Money
    reference: str
    connector: str
    metadata: dict[str, Any]
    #: ``refund``: pay the amount back to a card presented at a terminal (``standalone_refund``).
    kind: OperationKind = OperationKind.PURCHASE


class PaymentEngine(Ledger):
    """Every change to a payment goes through here (API, CLI, ERP sources, jobs alike)."""

    def __init__(
        self,
        db: Database,
        connectors: Mapping[str, Connector],
        families: Sequence[FamilyRuntime],
        *,
        redactor: Redactor,
        clock: Clock = utcnow,
        listeners: Sequence[PaymentListener] = (),
    ) -> None:
        super().__init__(
            db, connectors, families, redactor=redactor, clock=clock, listeners=listeners
        )
        self.recovery = Recovery(self)

    # create -------------------------------------------------------------------------------------

    def check_new(self, new: NewPayment) -> Connector:
        """Raise for a payment that can never run as asked (before any transaction starts)."""
        c = self.connector(new.connector)
        if c.problem is not None:
            raise ValidationError(
                f"connector {c.name} is not usable: {c.problem}", code="connector_misconfigured"
            )
        if new.kind == OperationKind.REFUND:
            if not c.capabilities.standalone_refund:
                raise NotSupported(
                    f"connector {c.name} cannot pay money back to a card; refund the original "
                    "payment with POST /v1/payments/{id}/refunds"
                )
        elif new.kind != OperationKind.PURCHASE:
            raise ValidationError(f"a payment starts with a purchase, not a {new.kind}")
        if not new.amount.is_positive():
            raise ValidationError("amount must be positive", code="invalid_amount")
        c.validate(new.kind, new.amount)
        return c

    async def create(
        self, conn: AsyncConnection, new: NewPayment, *, actor: str, idempotency_key: str | None
    ) -> Payment:
        """Insert the payment, its first operation and the job that executes it."""
        c = self.check_new(new)
        now = self.clock()
        p = Payment(
            id=new_id("pay"),
            amount=new.amount,
            reference=new.reference,
            connector=new.connector,
            state=PaymentState.CREATED,
            created_at=now,
            updated_at=now,
            metadata=new.metadata,
        )
        op = Operation(
            id=new_id("op"),
            payment_id=p.id,
            kind=new.kind,
            amount=new.amount,
            echo_id=new_id("tx"),
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
        )
        await repo.insert_payment(conn, p)
        await repo.insert_operation(conn, op)
        fam = self.family(c)
        await fam.on_created(conn, p, op, now)
        await self._enqueue_execute(conn, fam, p, op)
        await self.record_change(conn, "payment.created", p, actor, amount=new.amount.minor)
        return p

    async def _enqueue_execute(
        self, conn: AsyncConnection, fam: FamilyRuntime, p: Payment, op: Operation
    ) -> None:
        await enqueue(
            conn,
            jobs.EXECUTE_JOB,
            jobs.operation_payload(p.id, op.id, p.connector),
            key=fam.job_key(p.connector, p.id),
            now=op.created_at,
        )

    async def refund(
        self,
        conn: AsyncConnection,
        payment_id: str,
        amount: Money | None,
        *,
        actor: str,
        idempotency_key: str | None,
        reason: str | None = None,
    ) -> Refund:
        """Reserve and queue a refund of a captured payment (all that is left when ``amount``
        is None). Refused before anything is stored when the connector cannot do it or the
        amount exceeds what is refundable."""
        p = await repo.get_payment(conn, payment_id)
        if p.state not in (PaymentState.CAPTURED, PaymentState.PARTIALLY_REFUNDED):
            raise IllegalTransition(
                f"payment {p.id} is {p.state}; only captured payments are refunded"
            )
        c = self.connector(p.connector)
        if not c.capabilities.refund:
            raise NotSupported(f"connector {c.name} cannot refund a payment")
        value = amount if amount is not None else p.refundable
        if value.minor < p.captured_minor - p.refunded_minor and not c.capabilities.partial_refund:
            raise NotSupported(f"connector {c.name} refunds only the whole remaining amount")
        now = self.clock()
        op = Operation(
            id=new_id("op"),
            payment_id=p.id,
            kind=OperationKind.REFUND,
            amount=value,
            echo_id=new_id("tx"),
            created_at=now,
            updated_at=now,
            idempotency_key=idempotency_key,
        )
        refund = p.request_refund(value, new_id("re"), op.id, now)
        refund.reason = reason
        await repo.insert_operation(conn, op)
        await repo.insert_refund(conn, refund)
        await repo.save_payment(conn, p)
        await self._enqueue_execute(conn, self.family(c), p, op)
        await self.record_change(
            conn, "payment.refund_requested", p, actor, notify=False, amount=value.minor,
            refund_id=refund.id,
        )  # fmt: skip
        return refund

    # cancel -------------------------------------------------------------------------------------

    async def cancel(self, payment_id: str, *, actor: str) -> Payment:
        """Cancel a payment that has not started moving money; a repeat is a no-op.

        A payment already running is handed to its family: a terminal that can abort is asked
        to stop (its result says whether it did), one that cannot is a 409 saying where to
        cancel it; anything else that has started moving money is ``not_cancelable``.
        """
        async with self.db.write() as conn:
            p = await repo.get_payment(conn, payment_id)
            c = self.connectors.get(p.connector)
            if p.state != PaymentState.IN_PROGRESS or c is None:
                prev = p.state
                if p.cancel(self.clock()):  # raises not_cancelable for every other state
                    await repo.save_payment(conn, p)
                    await self.record_change(
                        conn, "payment.state_changed", p, actor, prev, reason="canceled"
                    )
                    if c is not None:
                        self.family(c).notify(p.id)
                return p
        return await self.family(c).request_abort(p, actor)

    # execute ------------------------------------------------------------------------------------

    async def execute(
        self, payment_id: str, operation_id: str, connector: str | None = None
    ) -> None:
        """Job handler for ``payment.execute``: send the operation once. Safe to run again."""
        if connector is None:
            async with self.db.read() as conn:
                connector = (await repo.get_payment(conn, payment_id)).connector
        c = self.job_connector(connector)
        fam = self.family(c)
        try:
            async with fam.lease(c, payment_id) as lease:
                await self._execute_leased(fam, lease, payment_id, operation_id)
        except TerminalBusy as exc:
            # Another local user holds the link (queued jobs of one key are serialized). Nothing
            # was sent; try again soon, unless the customer is gone.
            async with self.db.read() as conn:
                snap = await fam.snapshot(conn, payment_id, operation_id)
            if not _startable(snap) or await self._cancel_if_late(fam, snap):
                return
            raise RetryLater(exc.message, after=1.0, count_attempt=False) from None

    async def _execute_leased(
        self, fam: FamilyRuntime, lease: Lease, payment_id: str, operation_id: str
    ) -> None:
        sent = False
        try:
            async with self.db.write() as conn:
                snap = await fam.snapshot(conn, payment_id, operation_id)
                now = self.clock()
                if _startable(snap) and fam.ready(snap, now) and fam.too_late(snap, now) is None:
                    # The common case, in one transaction: nothing to settle or ask first.
                    await self._mark_sending(conn, fam, snap, now)
                    sent = True
        except ConcurrentUpdate:
            return  # changed under us (canceled): not ours to send
        if not sent:
            if _maybe_sent(snap):
                # A previous run committed "sent" and may have reached the counterpart before
                # it died: the money may have moved. Ask, never resend.
                await self.recovery.resumed(fam, lease, snap)
                return
            if snap.op.outcome == Outcome.UNKNOWN and snap.op.recovery_attempts == 0:
                # It died between the unknown outcome and the first status query.
                await self.recovery.after_unknown(fam, lease, payment_id, operation_id)
                return
            if not _startable(snap) or await self._cancel_if_late(fam, snap):
                return  # canceled, expired, already run or resolved: nothing to send
            snap = await fam.before_send(
                lease, snap, lambda pid, oid: self.recovery.recover_once(fam, lease, pid, oid)
            )
            try:
                async with self.db.write() as conn:
                    await self._mark_sending(conn, fam, snap, self.clock())
            except ConcurrentUpdate:
                return
        fam.notify(payment_id)
        result = await self._call(fam, lease, snap)
        log.info("payment.outcome", payment_id=payment_id, outcome=str(result.outcome))
        await self.apply(payment_id, operation_id, result, actor=_actor(fam), lease=lease,
                         known=snap)  # fmt: skip
        if result.outcome == Outcome.UNKNOWN:
            await self.recovery.after_unknown(fam, lease, payment_id, operation_id)

    async def _mark_sending(
        self, conn: AsyncConnection, fam: FamilyRuntime, snap: Snapshot, now: Any
    ) -> None:
        """Persist before sending: the operation as sent, the payment ``in_progress``, and the
        family's evidence. The payment's version check raises :class:`ConcurrentUpdate` if it
        changed since the snapshot; the transaction then rolls back and nothing is sent."""
        p, op = snap.p, snap.op
        await fam.on_sending(conn, snap, now)
        op.sent_at = now
        op.updated_at = now
        await repo.save_operation(conn, op)
        if is_primary(p, op):
            prev = p.state
            p.transition(PaymentState.IN_PROGRESS, now)
            await repo.save_payment(conn, p)
            await self.record_change(
                conn, "payment.state_changed", p, _actor(fam), prev, connector=p.connector
            )

    async def _cancel_if_late(self, fam: FamilyRuntime, snap: Snapshot) -> bool:
        """Cancel a queued payment that may no longer start; True if it was canceled."""
        reason = fam.too_late(snap, self.clock())
        if reason is None or not is_primary(snap.p, snap.op):
            return False
        try:
            async with self.db.write() as conn:
                p = copy.deepcopy(snap.p)
                prev = p.state
                p.cancel(self.clock(), reason=reason)
                await repo.save_payment(conn, p)  # fails if it changed since the snapshot
                await self.record_change(
                    conn, "payment.state_changed", p, _actor(fam), prev, reason="busy"
                )
        except ConcurrentUpdate:
            return True  # someone else moved it (canceled it first): not ours to start
        fam.notify(p.id)
        return True

    async def _call(self, fam: FamilyRuntime, lease: Lease, snap: Snapshot) -> ConnectorResult:
        """Run the money call and classify what escapes it per the outcome taxonomy."""
        req = await self.request(None, snap, fam)
        c = lease.connector
        try:
            async with fam.calling(lease, snap) as call:
                if req.kind == OperationKind.PURCHASE:
                    return await c.purchase(req, call)
                if req.kind == OperationKind.REFUND:
                    return await c.refund(req, call)
                if req.kind == OperationKind.REVERSAL:
                    return await c.reverse(req, call)
                raise NotSupported(f"connector {c.name} cannot run a {req.kind}")
        except TerminalBusy as exc:
            # The counterpart itself refused as busy (another cash register uses it).
            return ConnectorResult(
                Outcome.NOT_SENT, req.kind, detail=f"{BUSY_PREFIX}: {exc.message}"
            )
        except NotSent as exc:
            return ConnectorResult(Outcome.NOT_SENT, req.kind, detail=exc.message)
        except BridgeError as exc:
            return ConnectorResult(Outcome.UNKNOWN, req.kind, detail=exc.message)
        except Exception as exc:  # anything unexpected once sending began may have moved money
            log.exception("connector.call_failed", payment_id=req.payment_id, connector=c.name)
            return ConnectorResult(Outcome.UNKNOWN, req.kind, detail=type(exc).__name__)

    # operator -----------------------------------------------------------------------------------

    async def resolve(self, payment_id: str, *, outcome: str, reason: str, actor: str) -> Payment:
        """Settle an ``unknown`` payment (or its unknown refund) by hand, after checking the
        terminal or provider. Audited; the reason is required."""
        if outcome not in ("succeeded", "failed"):
            raise ValidationError("resolve as 'succeeded' or 'failed'")
        if not reason.strip():
            raise ValidationError("a reason is required: it goes to the audit log")
        async with self.db.write() as conn:
            p = await repo.get_payment(conn, payment_id)
            ops = await repo.list_operations(conn, p.id)
            unknown = [op for op in ops if op.outcome == Outcome.UNKNOWN]
            if p.state != PaymentState.UNKNOWN and not unknown:
                raise IllegalTransition(
                    f"payment {p.id} is {p.state}; only unknown payments are resolved by hand",
                    code="not_unknown",
                )
            why = f"resolved by operator: {reason}"
            now = self.clock()
            prev = p.state
            settled = Outcome.SUCCEEDED if outcome == "succeeded" else Outcome.NOT_SENT
            if p.state == PaymentState.UNKNOWN:
                first = ops[0]
                if outcome == "succeeded" and first.kind == OperationKind.REFUND:
                    await self._settle_primary(conn, p, first, Outcome.SUCCEEDED, reason=None)
                    p.failure_reason = why
                else:
                    target = (
                        PaymentState.CAPTURED if outcome == "succeeded" else PaymentState.FAILED
                    )
                    p.transition(target, now, reason=why)
                for op in ops:
                    if op.outcome in (Outcome.UNKNOWN, None):
                        op.record(settled, now, resolved_by=actor)
                        await repo.save_operation(conn, op)
            else:
                for op in unknown:  # refunds whose outcome stayed unknown
                    await self._settle_follow_up(conn, p, op, settled)
                    op.record(settled, now, resolved_by=actor)
                    await repo.save_operation(conn, op)
            await repo.save_payment(conn, p)
            await self.record_change(
                conn, "payment.resolved", p, actor, prev, outcome=outcome, reason=reason
            )
        self.family(self.connector(p.connector)).notify(p.id)
        return p


def _startable(snap: Snapshot) -> bool:
    """Not sent yet, and (for the first operation) still waiting to start."""
    if snap.op.outcome is not None or snap.op.sent_at is not None:
        return False
    return not is_primary(snap.p, snap.op) or snap.p.state == PaymentState.CREATED


def _maybe_sent(snap: Snapshot) -> bool:
    """Committed as sent without an outcome: it may have reached the counterpart."""
    if snap.op.outcome is not None:
        return False
    return snap.op.sent_at is not None or (
        is_primary(snap.p, snap.op) and snap.p.state == PaymentState.IN_PROGRESS
    )


def _actor(fam: FamilyRuntime) -> str:
    return fam.actor
