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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.audit.log import record as audit_record
from tillbridge.config import Terminal
from tillbridge.domain.payments import Operation, Payment
from tillbridge.domain.states import Outcome, PaymentState
from tillbridge.errors import (
    ConcurrentUpdate,
    DomainError,
    NotFound,
    TerminalBusy,
    ValidationError,
)
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
    TerminalResult,
)
from tillbridge.terminals.events import EventLog
from tillbridge.terminals.handles import TerminalHandle, build_handle
from tillbridge.terminals.recovery import Recovery
from tillbridge.terminals.results import ResultWriter
from tillbridge.terminals.runner import run_payment
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


@dataclass(slots=True)
class Snapshot:
    """A terminal payment as the job found it (see :meth:`TerminalEngine._snapshot`)."""

    p: Payment
    op: Operation
    tp: ts.TerminalPayment
    st: ts.TerminalState
    previous_unknown: str | None
    """The terminal's previous payment, if its outcome is still being recovered."""


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
        #: How long a job waits for the in-process link lock (normally free: jobs of one
        #: terminal are serialized by their queue key; only local tools compete for it).
        self._lock_wait_s = 5.0
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
            await self.execute(ctx.payload["payment_id"], ctx.payload.get("terminal"))

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
            conn,
            EXECUTE_JOB,
            {"payment_id": p.id, "terminal": p.connector},
            key=terminal_key(p.connector),
            now=now,
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

    async def execute(self, payment_id: str, terminal: str | None = None) -> None:
        """Job handler for ``terminal.execute`` (see the module docstring)."""
        if terminal is None:  # jobs carry the terminal; read it only if one does not
            async with self.db.read() as conn:
                terminal = (await ts.get_terminal_payment(conn, payment_id)).terminal
        if terminal not in self.handles:
            raise PermanentFailure(f"terminal {terminal} is not configured in this process")
        try:
            async with self.sessions.hold(terminal, wait_s=self._lock_wait_s) as session:
                await self._execute_held(session, payment_id)
        except TerminalBusy as exc:
            # Another local user holds the link (not a queued job: those are serialized by
            # their key). Nothing was sent; try again soon, unless the customer is gone.
            async with self.db.read() as conn:
                snap = await self._snapshot(conn, payment_id)
            if snap.p.state != PaymentState.CREATED or await self._expire_if_late(snap):
                return
            raise RetryLater(exc.message, after=1.0, count_attempt=False) from None

    async def _snapshot(self, conn: AsyncConnection, payment_id: str) -> Snapshot:
        """Everything the job decides on, read in one transaction."""
        p, op, tp, st = await ts.load_snapshot(conn, payment_id)
        previous_unknown = None
        if st.last_payment_id not in (None, payment_id) and st.last_outcome == "unknown":
            previous_unknown = st.last_payment_id
        return Snapshot(p, op, tp, st, previous_unknown)

    async def _expire_if_late(self, snap: Snapshot) -> bool:
        """Cancel a queued payment past its ``start_by``; True if it was canceled."""
        if self.clock() <= snap.tp.start_by:
            return False
        p, tp = snap.p, snap.tp
        waited = int((tp.start_by - p.created_at).total_seconds())
        reason = (
            f"terminal {tp.terminal} was busy: the payment did not start within {waited} s "
            "and was canceled; nothing was sent to the terminal"
        )
        try:
            async with self.db.write() as conn:
                prev = p.state
                p.cancel(self.clock(), reason=reason)
                await repo.save_payment(conn, p)  # fails if it changed since the snapshot
                await self.payments.record_change(
                    conn, "payment.state_changed", p, "terminal-engine", prev, reason="busy"
                )
        except ConcurrentUpdate:
            return True  # someone else moved it (canceled it first): not ours to start
        self.events.notify(p.id)
        return True

    async def _execute_held(self, session: ActiveSession, payment_id: str) -> None:
        sent = False
        try:
            async with self.db.write() as conn:
                snap = await self._snapshot(conn, payment_id)
                if self._ready(snap):
                    # The common case, in one transaction: nothing to settle or ask first.
                    await self._mark_sending(conn, snap)
                    sent = True
        except ConcurrentUpdate:
            return  # changed under us (canceled): not ours to send
        if not sent:
            if snap.p.state == PaymentState.IN_PROGRESS:
                # A previous run committed in_progress and may have sent the request before
                # it died: the terminal may have charged the card. Ask, never resend.
                await self.recovery.mark_unknown(
                    payment_id, "the bridge stopped while the terminal was running this payment"
                )
                await self.recovery.recover(payment_id)
                return
            if snap.p.state != PaymentState.CREATED or await self._expire_if_late(snap):
                return  # canceled, expired, already run or resolved: nothing to send
            h = self.handles[snap.tp.terminal]
            snap.st = await self.recovery.before_next(h, snap.st, snap.previous_unknown)
            try:
                async with self.db.write() as conn:
                    await self._mark_sending(conn, snap)
            except ConcurrentUpdate:
                return
        self.events.notify(payment_id)
        h = self.handles[snap.tp.terminal]
        result = await run_payment(self, session, h, snap.p, snap.tp)
        await self.results.apply(
            payment_id, result, actor="terminal-engine", buffer=session.buffer,
            known=(snap.p, snap.op),
        )  # fmt: skip
        if result.outcome == Outcome.UNKNOWN:
            await self.recovery.recover(payment_id)

    def _ready(self, snap: Snapshot) -> bool:
        """Can be sent at once: queued, in time, nothing to recover or ask the terminal first."""
        return (
            snap.p.state == PaymentState.CREATED
            and self.clock() <= snap.tp.start_by
            and snap.previous_unknown is None
            and not (snap.st.needs_probe and self.handles[snap.tp.terminal].probe is not None)
        )

    async def _mark_sending(self, conn: AsyncConnection, snap: Snapshot) -> None:
        """Persist before sending: ``in_progress``, the echo evidence and "last payment".

        The payment row's version check raises :class:`ConcurrentUpdate` if it changed since
        the snapshot (canceled meanwhile); the transaction then rolls back and nothing is sent.
        """
        p, st = snap.p, snap.st
        now = self.clock()
        await ts.update_terminal_payment(
            conn, p.id, now, sent_at=now,
            previous_echo_id=st.last_trace, previous_receipt=st.last_receipt,
        )  # fmt: skip
        await ts.update_state(conn, p.connector, now, last_payment_id=p.id, last_outcome=None)
        prev = p.state
        p.transition(PaymentState.IN_PROGRESS, now)
        await repo.save_payment(conn, p)
        await self.payments.record_change(
            conn, "payment.state_changed", p, "terminal-engine", prev, terminal=p.connector
        )
        snap.tp.previous_echo_id, snap.tp.sent_at = st.last_trace, now

    def _persist_hook(self, terminal: str) -> Callable[[TerminalResult], Any]:
        async def persist(result: TerminalResult) -> None:
            session = self.sessions.active(terminal)
            if session is None or session.persist is None:
                # A result with no payment to attach it to must not be accepted blindly.
                raise RuntimeError(f"terminal {terminal}: result outside a payment session")
            await session.persist(result)

        return persist

    async def apply(
        self,
        payment_id: str,
        result: TerminalResult,
        *,
        actor: str,
    ) -> Payment:
        """Commit a terminal's answer for ``payment_id`` (see :meth:`ResultWriter.apply`)."""
        return await self.results.apply(payment_id, result, actor=actor)
