"""The terminal payment engine: runs payments on card terminals, one at a time per terminal.

The order of events for a terminal payment, and why:

1. ``PaymentService.create`` (API, ERP source) commits the payment, its operation, the
   ``terminal_payments`` row and a ``terminal.execute`` job keyed ``terminal:<id>`` in one
   transaction (:meth:`TerminalEngine.schedule`). Nothing is sent.
2. The job runs when the terminal is free (per-key serialization, see :mod:`.sessions`). A
   payment that has not started by its ``start_by`` (the terminal stayed busy) is canceled
   with that reason instead: a customer is no longer waiting for it.
3. Before sending, the engine commits ``in_progress`` together with the recovery evidence: the
   last trace number the bridge saw on this terminal (``previous_echo_id``; for ZVT the terminal
   assigns the trace, so this is what can be persisted before sending) and marks this payment
   as the terminal's last one. If that evidence may be stale (an earlier outcome stayed
   unknown), the terminal is first asked for its last transaction.
4. The connector runs the payment. Its ``persist_result`` hook stores the terminal's result
   (trace, receipt number, masked PAN, receipts) *before* the result is acknowledged.
5. The outcome is committed with the remaining events. ``unknown`` (timeout, cut link) goes to
   recovery at once, still holding the terminal (:mod:`.recovery`): ask, never resend.

If the process dies after step 3, the job comes back (its lease expires) and finds the payment
``in_progress`` with ``sent_at`` set: it is marked ``unknown`` and recovered, never resent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.audit.log import record as audit_record
from tillbridge.config import Terminal
from tillbridge.domain.payments import Operation, Payment
from tillbridge.domain.states import OperationKind, Outcome, PaymentState
from tillbridge.errors import DomainError, NotFound, TerminalBusy, ValidationError
from tillbridge.queue import (
    JobContext,
    JobRegistry,
    PermanentFailure,
    RetryLater,
    RetryPolicy,
    enqueue,
)
from tillbridge.services.payments import PaymentService
from tillbridge.store import payments_repo as repo
from tillbridge.store.db import Database
from tillbridge.terminals import store as ts
from tillbridge.terminals.admin import TerminalAdmin
from tillbridge.terminals.contract import (
    PurchaseRequest,
    RefundRequest,
    TerminalResult,
    TransactionKind,
)
from tillbridge.terminals.events import EventBuffer, EventLog
from tillbridge.terminals.handles import TerminalHandle, build_handle
from tillbridge.terminals.recovery import Recovery
from tillbridge.terminals.results import BUSY_PREFIX, ResultWriter
from tillbridge.terminals.sessions import ActiveSession, TerminalSessions

log = structlog.get_logger("tillbridge.terminals")

EXECUTE_JOB: Final = "terminal.execute"
RECOVER_JOB: Final = "terminal.recover"
SETTLE_JOB: Final = "terminal.settle"

#: How long a payment may wait for a busy terminal before it is canceled.
DEFAULT_START_TIMEOUT: Final = timedelta(seconds=120)
#: Largest amount a ZVT terminal accepts (BMP 04: 6 BCD bytes of minor units).
MAX_TERMINAL_AMOUNT: Final = 999_999_999_999
#: Errors outside the outcome taxonomy (the database went away mid-job): a few retries, then the
#: dead letter, where an operator sees them. Busy terminals retry without using attempts.
TERMINAL_RETRY: Final = RetryPolicy(
    max_attempts=6, base_delay=timedelta(seconds=1), max_delay=timedelta(minutes=2)
)
#: How often a running payment looks for an abort requested from another process.
CANCEL_POLL_S: Final = 0.5


def utcnow() -> datetime:
    return datetime.now(UTC)


def terminal_key(terminal: str) -> str:
    """The job key that serializes everything one terminal does (the terminal's lease)."""
    return f"terminal:{terminal}"


class TerminalEngine:
    """Runs terminal payments (it is the payment service's delegate for every terminal).

    Job handlers (``execute``, ``recover``, ``settle``) are idempotent: they check persisted
    state before acting, and a payment that may have been sent is only ever queried again.
    """

    def __init__(
        self,
        db: Database,
        payments: PaymentService,
        terminals: dict[str, Terminal],
        *,
        passwords: dict[str, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
        start_timeout: timedelta = DEFAULT_START_TIMEOUT,
    ) -> None:
        self.db = db
        self.payments = payments
        self.clock = clock
        self.start_timeout = start_timeout
        self.events = EventLog(db, clock)
        self.sessions = TerminalSessions(list(terminals))
        pw = passwords or {}
        self.handles: dict[str, TerminalHandle] = {
            name: build_handle(name, t, self._persist_hook(name), password=pw.get(name))
            for name, t in terminals.items()
        }
        self.results = ResultWriter(db, payments, self.events, lambda: self.clock)
        self.recovery = Recovery(self)
        self.admin = TerminalAdmin(self)

    def register_jobs(self, registry: JobRegistry) -> None:
        """Add the terminal job kinds. No per-attempt timeout: a card payment legitimately
        runs minutes (T4 is 180 s per terminal message); the job lease has heartbeats."""

        async def execute(ctx: JobContext) -> None:
            await self.execute(ctx.payload["payment_id"])

        async def recover(ctx: JobContext) -> None:
            await self.recovery.job(ctx.payload["payment_id"])

        async def settle(ctx: JobContext) -> None:
            await self.admin.settle(ctx.payload["settlement_id"], ctx.payload["terminal"])

        registry.register(EXECUTE_JOB, execute, retry=TERMINAL_RETRY)
        registry.register(RECOVER_JOB, recover, retry=TERMINAL_RETRY)
        registry.register(SETTLE_JOB, settle, retry=TERMINAL_RETRY)

    def handle(self, terminal: str) -> TerminalHandle:
        try:
            return self.handles[terminal]
        except KeyError:
            raise NotFound(f"no terminal named {terminal!r}", code="unknown_terminal") from None

    async def close(self) -> None:
        for h in self.handles.values():
            await h.close()

    # payment service delegate -------------------------------------------------------------------

    def validate(self, terminal: str, amount_minor: int, currency: str) -> TerminalHandle:
        """Raise for a request the terminal can never run (unknown terminal, amount, currency)."""
        h = self.handle(terminal)
        if h.problem is not None:
            raise ValidationError(
                f"terminal {terminal} is not usable: {h.problem}", code="terminal_misconfigured"
            )
        if currency != h.currency:
            raise ValidationError(
                f"terminal {terminal} takes {h.currency}, not {currency}", code="wrong_currency"
            )
        if not 0 < amount_minor <= MAX_TERMINAL_AMOUNT:
            raise ValidationError(
                f"a terminal amount is 1 to {MAX_TERMINAL_AMOUNT} minor units",
                code="invalid_amount",
            )
        return h

    async def schedule(self, conn: AsyncConnection, p: Payment, op: Operation) -> None:
        """Queue ``p`` on its terminal, in the creating transaction (nothing is sent)."""
        self.validate(p.connector, p.amount.minor, p.currency)
        now = self.clock()
        tp = ts.TerminalPayment(
            p.id, op.id, p.connector, str(op.kind), start_by=now + self.start_timeout
        )
        await ts.insert_terminal_payment(conn, tp, now)
        await enqueue(
            conn, EXECUTE_JOB, {"payment_id": p.id}, key=terminal_key(p.connector), now=now
        )

    async def request_cancel(self, p: Payment, *, actor: str) -> Payment:
        """Ask the terminal to abort the running payment ``p``. Never moves money.

        Records the request (so a worker in another process sees it) and, if this process runs
        the payment, sends the abort at once. The payment's own result says whether the abort
        took effect (``declined``, abort code 6C) or came too late (``captured``).
        """
        h = self.handle(p.connector)
        if not h.connector.capabilities.can_abort:
            raise DomainError(
                f"terminal {p.connector} cannot abort a running payment from the bridge: "
                "cancel it on the terminal itself (its stop/cancel key)",
                code="cancel_on_terminal",
            )
        async with self.db.write() as conn:
            p = await repo.get_payment(conn, p.id)
            tp = await ts.get_terminal_payment(conn, p.id)
            if p.state == PaymentState.IN_PROGRESS and tp.cancel_requested_at is None:
                now = self.clock()
                await ts.update_terminal_payment(conn, p.id, now, cancel_requested_at=now)
                await self.events.add(
                    conn, p.id, p.connector, "state", f"abort requested by {actor}"
                )
                await audit_record(
                    conn,
                    action="payment.cancel_requested",
                    actor=actor,
                    subject_type="payment",
                    subject_id=p.id,
                    payload={"state": str(p.state), "terminal": p.connector},
                    redactor=self.payments.redactor,
                )
        self.events.notify(p.id)
        session = self.sessions.active(p.connector)
        if session is not None and session.payment_id == p.id:
            session.abort_wanted = True
            session.abort_signal.set()
        return p

    async def on_payment_change(
        self, conn: AsyncConnection, p: Payment, previous: PaymentState | None
    ) -> None:
        """Payment listener: every state change of a terminal payment becomes an event."""
        if p.connector not in self.handles or previous == p.state:
            return
        text = f"payment {p.state}"
        if p.failure_reason and p.state != PaymentState.CAPTURED:
            text = f"{text}: {p.failure_reason}"
        data = {"state": str(p.state), "previous": str(previous) if previous else None}
        await self.events.add(conn, p.id, p.connector, "state", text, data=data)

    # job: execute -------------------------------------------------------------------------------

    async def execute(self, payment_id: str) -> None:
        """Job handler for ``terminal.execute`` (see the module docstring)."""
        async with self.db.read() as conn:
            tp = await ts.get_terminal_payment(conn, payment_id)
        if tp.terminal not in self.handles:
            raise PermanentFailure(f"terminal {tp.terminal} is not configured in this process")
        wait = (tp.start_by - self.clock()).total_seconds()
        try:
            async with self.sessions.hold(tp.terminal, wait_s=max(wait, 0.0)) as session:
                await self._execute_held(session, payment_id)
        except TerminalBusy as exc:
            if await self._expire_if_late(payment_id):
                return
            raise RetryLater(exc.message, after=1.0, count_attempt=False) from None

    async def _expire_if_late(self, payment_id: str) -> bool:
        """Cancel a queued payment past its ``start_by``; True if it is not to be started."""
        async with self.db.write() as conn:
            p = await repo.get_payment(conn, payment_id)
            tp = await ts.get_terminal_payment(conn, payment_id)
            if p.state != PaymentState.CREATED:
                return True
            if self.clock() <= tp.start_by:
                return False
            waited = int((tp.start_by - p.created_at).total_seconds())
            reason = (
                f"terminal {tp.terminal} was busy: the payment did not start within {waited} s "
                "and was canceled; nothing was sent to the terminal"
            )
            prev = p.state
            p.cancel(self.clock(), reason=reason)
            await repo.save_payment(conn, p)
            await self.payments.record_change(
                conn, "payment.state_changed", p, "terminal-engine", prev, reason="busy"
            )
        self.events.notify(payment_id)
        return True

    async def _execute_held(self, session: ActiveSession, payment_id: str) -> None:
        async with self.db.read() as conn:
            p = await repo.get_payment(conn, payment_id)
            tp = await ts.get_terminal_payment(conn, payment_id)
        if p.state == PaymentState.IN_PROGRESS:
            # A previous run committed in_progress and may have sent the request before it
            # died: the terminal may have charged the card. Ask, never resend.
            await self.recovery.mark_unknown(
                payment_id, "the bridge stopped while the terminal was running this payment"
            )
            await self.recovery.recover(payment_id)
            return
        if p.state != PaymentState.CREATED or await self._expire_if_late(payment_id):
            return  # canceled, expired, already run or resolved: nothing to send
        h = self.handles[tp.terminal]
        await self.recovery.before_next(h)
        if not await self._mark_sending(payment_id):
            return
        result = await self._run(session, h, p, tp)
        await self.apply(payment_id, result, actor="terminal-engine", session=session)
        if result.outcome == Outcome.UNKNOWN:
            await self.recovery.recover(payment_id)

    async def _mark_sending(self, payment_id: str) -> bool:
        """Persist before sending: ``in_progress``, the echo evidence and "last payment"."""
        async with self.db.write() as conn:
            p = await repo.get_payment(conn, payment_id)
            tp = await ts.get_terminal_payment(conn, payment_id)
            if p.state != PaymentState.CREATED:
                return False  # canceled while we were getting the terminal ready
            now = self.clock()
            st = await ts.get_state(conn, tp.terminal)
            await ts.update_terminal_payment(
                conn,
                payment_id,
                now,
                sent_at=now,
                previous_echo_id=st.last_trace,
                previous_receipt=st.last_receipt,
            )
            await ts.update_state(conn, tp.terminal, now, last_payment_id=payment_id)
            prev = p.state
            p.transition(PaymentState.IN_PROGRESS, now)
            await repo.save_payment(conn, p)
            await self.payments.record_change(
                conn, "payment.state_changed", p, "terminal-engine", prev, terminal=tp.terminal
            )
        self.events.notify(payment_id)
        return True

    async def _run(
        self, session: ActiveSession, h: TerminalHandle, p: Payment, tp: ts.TerminalPayment
    ) -> TerminalResult:
        buffer = EventBuffer(self.events, p.id, h.name)
        session.payment_id = p.id
        session.buffer = buffer
        session.persist = self._persist_for(p.id, h.name, buffer)
        buffer.start()
        watcher = asyncio.get_running_loop().create_task(self._watch_abort(session, h, p.id))
        try:
            if tp.kind == str(OperationKind.REFUND):
                return await h.connector.refund(
                    RefundRequest(p.amount, tp.operation_id, buffer.on_event)
                )
            return await h.connector.purchase(
                PurchaseRequest(p.amount, tp.operation_id, buffer.on_event)
            )
        except TerminalBusy as exc:
            # The terminal itself refused (another cash register uses it): nothing started.
            detail = f"{BUSY_PREFIX}: {exc.message}"
            return TerminalResult(Outcome.NOT_SENT, _kind(tp.kind), detail=detail)
        except Exception as exc:  # after sending began, anything unexpected may have charged
            log.exception("terminal.call_failed", payment_id=p.id, terminal=h.name)
            return TerminalResult(Outcome.UNKNOWN, _kind(tp.kind), detail=f"{type(exc).__name__}")
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await buffer.stop()
            session.persist = None

    async def _watch_abort(self, session: ActiveSession, h: TerminalHandle, pid: str) -> None:
        """Deliver an abort requested in this process (signal) or another one (the
        ``cancel_requested_at`` column, polled); retry until the terminal takes it."""
        while not session.abort_delivered:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.abort_signal.wait(), CANCEL_POLL_S)
            session.abort_signal.clear()
            if not session.abort_wanted:
                async with self.db.read() as conn:
                    tp = await ts.get_terminal_payment(conn, pid)
                session.abort_wanted = tp.cancel_requested_at is not None
            if session.abort_wanted:
                session.abort_delivered = await h.connector.cancel()

    def _persist_hook(self, terminal: str) -> Callable[[TerminalResult], Any]:
        async def persist(result: TerminalResult) -> None:
            session = self.sessions.active(terminal)
            if session is None or session.persist is None:
                # A result with no payment to attach it to must not be accepted blindly.
                raise RuntimeError(f"terminal {terminal}: result outside a payment session")
            await session.persist(result)

        return persist

    def _persist_for(
        self, payment_id: str, terminal: str, buffer: EventBuffer
    ) -> Callable[[TerminalResult], Any]:
        return self.results.persist_hook(payment_id, terminal, buffer)

    async def apply(
        self,
        payment_id: str,
        result: TerminalResult,
        *,
        actor: str,
        session: ActiveSession | None = None,
    ) -> Payment:
        """Commit a terminal's answer for ``payment_id`` (see :meth:`ResultWriter.apply`)."""
        buffer = session.buffer if session is not None else None
        return await self.results.apply(payment_id, result, actor=actor, buffer=buffer)


def _kind(kind: str) -> TransactionKind:
    return TransactionKind.REFUND if kind == str(OperationKind.REFUND) else TransactionKind.PURCHASE
