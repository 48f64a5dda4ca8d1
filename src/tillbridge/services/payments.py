"""The payment engine: create, execute, recover, cancel and resolve payments.

The order of events for a purchase, and why:

1. :meth:`PaymentService.create` commits, in one transaction, the payment (``created``), the
   purchase operation with the ``echo_id`` the connector will echo, and a ``payment.execute`` job.
   Nothing has been sent yet (persist before you send; no dual writes).
2. The worker runs :meth:`execute`: it first commits ``in_progress``, then calls the connector,
   then commits the outcome. If the process dies after step 2's commit and the job comes back,
   the payment is found ``in_progress``: the sale may have been sent, so it is **never sent
   again**; the job turns into a recovery (a status query).
3. An ``unknown`` outcome enqueues ``payment.recover``, which asks the connector what happened to
   the ``echo_id``, with backoff. What recovery cannot settle stays ``unknown`` for an operator
   (:meth:`resolve`, audited).

Jobs are keyed by payment, so two jobs of one payment never run at once.

Connectors that schedule their own work (card terminals: their jobs are keyed by terminal, not by
payment, so one terminal never runs two payments at once) register a :class:`PaymentDelegate`
under their connector name. :meth:`PaymentService.create` then hands the new payment to the
delegate instead of enqueueing ``payment.execute``, and :meth:`PaymentService.cancel` asks the
delegate to stop a payment that is already running there. Everything else (state table, audit,
listeners, operator resolution) is shared.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.audit.log import record as audit_record
from tillbridge.domain.payments import Operation, Payment, new_id
from tillbridge.domain.states import OperationKind, Outcome, PaymentState
from tillbridge.errors import (
    BridgeError,
    IllegalTransition,
    NotSent,
    ValidationError,
)
from tillbridge.gateways.contract import ConnectorResult, OperationRequest, PaymentConnector
from tillbridge.money import Money
from tillbridge.observability.redaction import Redactor
from tillbridge.queue import enqueue
from tillbridge.store import payments_repo as repo
from tillbridge.store.db import Database

log = structlog.get_logger(__name__)

EXECUTE_JOB = "payment.execute"
RECOVER_JOB = "payment.recover"

#: Delays between recovery attempts (status queries) for an unknown outcome.
RECOVERY_BACKOFF = (timedelta(seconds=2), timedelta(seconds=10), timedelta(seconds=60))


def utcnow() -> datetime:
    return datetime.now(UTC)


def job_key(payment_id: str) -> str:
    return f"payment:{payment_id}"


#: Called inside the transaction of every payment state change, after the change is saved:
#: ``listener(conn, payment, previous_state)``. Listeners enqueue follow-up work (outgoing
#: webhooks, ERP write-back) in that same transaction, so it exists iff the change committed.
#: They must not do I/O beyond the connection, and must tolerate being called for any state.
PaymentListener = Callable[[AsyncConnection, Payment, PaymentState | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class NewPayment:
    amount: Money
    reference: str
    connector: str
    metadata: dict[str, Any]
    #: ``refund`` only for delegates that pay out to a card (a standalone terminal refund).
    kind: OperationKind = OperationKind.PURCHASE


class PaymentDelegate(Protocol):
    """A connector family that runs its payments on its own jobs (card terminals).

    ``schedule`` must only write through ``conn`` (the creating transaction: the payment exists
    iff its job does) and must never send anything. ``request_cancel`` must never move money:
    it asks the counterpart to abort, or raises a :class:`~tillbridge.errors.DomainError`
    explaining where the payment has to be cancelled instead. Both are idempotent.
    """

    async def schedule(self, conn: AsyncConnection, p: Payment, op: Operation) -> None: ...

    async def request_cancel(self, p: Payment, *, actor: str) -> Payment: ...


class PaymentService:
    """Every change to a payment goes through here (API, CLI, jobs alike)."""

    def __init__(
        self,
        db: Database,
        connectors: dict[str, PaymentConnector],
        *,
        redactor: Redactor,
        clock: Callable[[], datetime] = utcnow,
        listeners: list[PaymentListener] | None = None,
    ) -> None:
        self.listeners: list[PaymentListener] = list(listeners or [])
        #: connector name -> the delegate that runs its payments (see the module docstring).
        self.delegates: dict[str, PaymentDelegate] = {}
        self.db = db
        self.connectors = connectors
        self.redactor = redactor
        self.clock = clock

    def connector(self, name: str) -> PaymentConnector:
        try:
            return self.connectors[name]
        except KeyError:
            known = ", ".join(sorted(self.connectors)) or "none"
            raise ValidationError(
                f"unknown connector {name!r} (configured: {known})", code="unknown_connector"
            ) from None

    async def _audit(
        self,
        conn: AsyncConnection,
        action: str,
        p: Payment,
        actor: str,
        previous: PaymentState | None = None,
        *,
        notify: bool = True,
        **payload: Any,
    ) -> None:
        """Audit a change and tell the listeners, in the transaction that made the change."""
        if notify:
            for listener in self.listeners:
                await listener(conn, p, previous)
        await audit_record(
            conn,
            action=action,
            actor=actor,
            subject_type="payment",
            subject_id=p.id,
            payload={"state": str(p.state), **payload},
            redactor=self.redactor,
        )

    async def record_change(
        self,
        conn: AsyncConnection,
        action: str,
        p: Payment,
        actor: str,
        previous: PaymentState | None = None,
        **payload: Any,
    ) -> None:
        """Audit a change a delegate made and tell the listeners, in the same transaction."""
        await self._audit(conn, action, p, actor, previous, **payload)

    async def settle_outcome(
        self,
        conn: AsyncConnection,
        p: Payment,
        op: Operation,
        outcome: Outcome,
        *,
        reason: str | None = None,
    ) -> None:
        """Apply an operation's outcome to ``p`` (in memory; the caller saves ``p``).

        A succeeded standalone refund (operation kind ``refund``, no earlier sale: a terminal
        paid the amount back to a card) ends ``refunded``: it is recorded as captured and then
        refunded in full, so refund totals and the ``payment.refunded`` event are right and a
        listener never mistakes it for a sale.
        """
        now = self.clock()
        if op.kind == OperationKind.REFUND and outcome == Outcome.SUCCEEDED:
            p.transition(PaymentState.CAPTURED, now)
            refund = p.request_refund(op.amount, new_id("re"), op.id, now)
            await repo.insert_refund(conn, refund)
            p.settle_refund(refund, Outcome.SUCCEEDED, now)
            await repo.save_refund(conn, refund)
            return
        p.apply_purchase_outcome(outcome, now, reason=reason)

    # create / cancel ---------------------------------------------------------------------------

    async def create(
        self, conn: AsyncConnection, new: NewPayment, *, actor: str, idempotency_key: str | None
    ) -> Payment:
        """Insert the payment, its purchase operation and the job that executes it."""
        self.connector(new.connector)
        if not new.amount.is_positive():
            raise ValidationError("amount must be positive", code="invalid_amount")
        delegate = self.delegates.get(new.connector)
        if new.kind not in (OperationKind.PURCHASE, OperationKind.REFUND) or (
            new.kind == OperationKind.REFUND and delegate is None
        ):
            raise ValidationError(
                f"connector {new.connector!r} cannot start a {new.kind}", code="invalid_kind"
            )
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
        if delegate is not None:
            await delegate.schedule(conn, p, op)
        else:
            await enqueue(
                conn, EXECUTE_JOB, {"payment_id": p.id, "operation_id": op.id}, key=job_key(p.id)
            )
        await self._audit(conn, "payment.created", p, actor, amount=new.amount.minor)
        return p

    async def cancel(self, payment_id: str, *, actor: str) -> Payment:
        """Cancel a payment that has not started moving money; a repeat is a no-op.

        A payment already running on a delegate (a terminal) is handed to the delegate, which
        asks the terminal to abort or says that it must be cancelled on the terminal.
        """
        async with self.db.write() as conn:
            p = await repo.get_payment(conn, payment_id)
            delegate = self.delegates.get(p.connector)
            if delegate is None or p.state != PaymentState.IN_PROGRESS:
                prev = p.state
                if p.cancel(self.clock()):
                    await repo.save_payment(conn, p)
                    await self._audit(
                        conn, "payment.state_changed", p, actor, prev, reason="canceled"
                    )
                return p
        return await delegate.request_cancel(p, actor=actor)

    # worker side -------------------------------------------------------------------------------

    def _request(self, p: Payment, op: Operation) -> OperationRequest:
        return OperationRequest(
            operation_id=op.id,
            payment_id=p.id,
            kind=op.kind,
            amount=op.amount,
            reference=p.reference,
            echo_id=op.echo_id,
            metadata=p.metadata,
        )

    async def execute(self, payment_id: str, operation_id: str) -> None:
        """Job handler for ``payment.execute``. Safe to run more than once."""
        async with self.db.write() as conn:
            p = await repo.get_payment(conn, payment_id)
            op = await repo.get_operation(conn, operation_id)
            if p.connector in self.delegates:
                return  # its delegate runs it on its own jobs; never send it from here
            if p.state == PaymentState.IN_PROGRESS and op.outcome is None:
                # A previous run may have sent the sale before it died: ask, never resend.
                op.record(Outcome.UNKNOWN, self.clock(), reason="worker died while sending")
                p.apply_purchase_outcome(Outcome.UNKNOWN, self.clock())
                await repo.save_operation(conn, op)
                await repo.save_payment(conn, p)
                await self._audit(
                    conn,
                    "payment.state_changed",
                    p,
                    "worker",
                    PaymentState.IN_PROGRESS,
                    reason="resumed",
                )
                await self._schedule_recovery(conn, p, op, attempt=0)
                return
            if p.state != PaymentState.CREATED or op.outcome is not None:
                return  # already executed, canceled or resolved: nothing to do
            p.transition(PaymentState.IN_PROGRESS, self.clock())
            await repo.save_payment(conn, p)
            await self._audit(conn, "payment.state_changed", p, "worker", PaymentState.CREATED)

        connector = self.connector(p.connector)
        result = await _call(connector.purchase, self._request(p, op))
        log.info("payment.outcome", payment_id=p.id, outcome=str(result.outcome))
        await self._apply(payment_id, operation_id, result, actor="worker", attempt=0)

    async def recover(self, payment_id: str, operation_id: str, attempt: int) -> None:
        """Job handler for ``payment.recover``: ask the connector what happened, never resend."""
        async with self.db.read() as conn:
            p = await repo.get_payment(conn, payment_id)
            op = await repo.get_operation(conn, operation_id)
        if p.state != PaymentState.UNKNOWN or p.connector in self.delegates:
            return  # resolved meanwhile (late notification or an operator), or not ours
        result = await _call(self.connector(p.connector).query, self._request(p, op))
        if result.outcome == Outcome.NOT_SENT:
            # The counterpart has no record of it: the sale never arrived, no money moved.
            result = ConnectorResult(Outcome.NOT_SENT, reason=result.reason or "never arrived")
        await self._apply(payment_id, operation_id, result, actor="recovery", attempt=attempt + 1)

    async def _apply(
        self,
        payment_id: str,
        operation_id: str,
        result: ConnectorResult,
        *,
        actor: str,
        attempt: int,
    ) -> None:
        async with self.db.write() as conn:
            p = await repo.get_payment(conn, payment_id)
            op = await repo.get_operation(conn, operation_id)
            now = self.clock()
            if p.state in (PaymentState.UNKNOWN, PaymentState.IN_PROGRESS) or (
                p.state == PaymentState.CREATED
            ):
                if result.outcome == Outcome.UNKNOWN and op.outcome == Outcome.UNKNOWN:
                    await self._schedule_recovery(conn, p, op, attempt=attempt)
                    return
                op.record(
                    result.outcome,
                    now,
                    reason=result.reason,
                    provider_reference=result.provider_reference,
                    masked_pan=result.masked_pan,
                    auth_code=result.auth_code,
                )
                prev = p.state
                p.apply_purchase_outcome(result.outcome, now, reason=result.reason)
                await repo.save_operation(conn, op)
                await repo.save_payment(conn, p)
                await self._audit(
                    conn, "payment.state_changed", p, actor, prev, outcome=str(result.outcome)
                )
                if result.outcome == Outcome.UNKNOWN:
                    await self._schedule_recovery(conn, p, op, attempt=attempt)

    async def _schedule_recovery(
        self, conn: AsyncConnection, p: Payment, op: Operation, *, attempt: int
    ) -> None:
        if attempt >= len(RECOVERY_BACKOFF):
            log.warning("payment.unresolved", payment_id=p.id, attempts=attempt)
            await self._audit(
                conn,
                "payment.needs_operator",
                p,
                "recovery",
                notify=False,
                instruction=(
                    "check the transaction on the terminal or provider, then run "
                    f"`tillbridge payments resolve {p.id} --as succeeded|failed --reason ...`"
                ),
            )
            return
        await enqueue(
            conn,
            RECOVER_JOB,
            {"payment_id": p.id, "operation_id": op.id, "attempt": attempt},
            key=job_key(p.id),
            run_after=self.clock() + RECOVERY_BACKOFF[attempt],
        )

    # operator ----------------------------------------------------------------------------------

    async def resolve(self, payment_id: str, *, outcome: str, reason: str, actor: str) -> Payment:
        """Settle an ``unknown`` payment by hand after checking the terminal or provider."""
        if outcome not in ("succeeded", "failed"):
            raise ValidationError("resolve as 'succeeded' or 'failed'")
        if not reason.strip():
            raise ValidationError("a reason is required: it goes to the audit log")
        async with self.db.write() as conn:
            p = await repo.get_payment(conn, payment_id)
            if p.state != PaymentState.UNKNOWN:
                raise IllegalTransition(
                    f"payment {p.id} is {p.state}; only unknown payments are resolved by hand",
                    code="not_unknown",
                )
            why = f"resolved by operator: {reason}"
            ops = await repo.list_operations(conn, p.id)
            if outcome == "succeeded" and ops and ops[0].kind == OperationKind.REFUND:
                await self.settle_outcome(conn, p, ops[0], Outcome.SUCCEEDED)
                p.failure_reason = why
            else:
                target = PaymentState.CAPTURED if outcome == "succeeded" else PaymentState.FAILED
                p.transition(target, self.clock(), reason=why)
            for op in ops:
                if op.outcome in (Outcome.UNKNOWN, None):
                    op.record(
                        Outcome.SUCCEEDED if outcome == "succeeded" else Outcome.NOT_SENT,
                        self.clock(),
                        resolved_by=actor,
                    )
                    await repo.save_operation(conn, op)
            await repo.save_payment(conn, p)
            await self._audit(
                conn,
                "payment.resolved",
                p,
                actor,
                PaymentState.UNKNOWN,
                outcome=outcome,
                reason=reason,
            )
            return p


async def _call(fn: Callable[[OperationRequest], Any], req: OperationRequest) -> ConnectorResult:
    """Call a connector and classify exceptions per the outcome taxonomy."""
    try:
        result: ConnectorResult = await fn(req)
    except NotSent as exc:
        return ConnectorResult(Outcome.NOT_SENT, reason=exc.message)
    except BridgeError as exc:
        return ConnectorResult(Outcome.UNKNOWN, reason=exc.message)
    except Exception as exc:  # anything else after the call started may have been sent
        log.exception("connector.error", payment_id=req.payment_id)
        return ConnectorResult(Outcome.UNKNOWN, reason=f"{type(exc).__name__}")
    return result
