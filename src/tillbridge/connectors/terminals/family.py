"""The card-present runtime: what a terminal adds to the engine's one payment flow.

The engine (:mod:`tillbridge.payments.engine`) runs every payment; for terminals this runtime
supplies (see :class:`~tillbridge.payments.families.FamilyRuntime`):

* **the lease**: every job that talks to terminal ``lane1`` is keyed ``terminal:lane1`` (one at
  a time on any worker, in enqueue order), and inside a process :class:`.sessions.TerminalSessions`
  guards the link itself;
* **queueing**: a payment waits for a busy terminal until its ``start_by`` (120 s by default),
  then is canceled with that reason: a customer is no longer waiting for it;
* **recovery evidence**, committed before sending: the last trace number the bridge saw on this
  terminal (ZVT assigns the trace, so that is what can be persisted) and "this is the terminal's
  last payment". If that evidence may be stale (an outcome stayed unknown), the terminal is
  asked for its last transaction first, and a previous payment still unknown is recovered
  before the next one is sent;
* **the decision point**: the connector's ``persist`` stores the terminal's result (trace,
  receipt number, masked PAN, receipts) and the display events so far *before* the result is
  acknowledged;
* **events**: display texts, prompts, receipt lines and state changes, streamed by
  ``GET /v1/payments/{id}/events``;
* **abort**: a cancel of a running payment is recorded (so a worker in another process sees it)
  and delivered by the running call's watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.audit.log import record as audit_record
from tillbridge.clock import Clock
from tillbridge.connectors.terminals import store as ts
from tillbridge.connectors.terminals.events import OPERATOR, EventBuffer, EventLog, event_row
from tillbridge.connectors.terminals.sessions import ActiveSession, TerminalSessions
from tillbridge.domain.payments import Operation, Payment
from tillbridge.domain.states import Outcome, PaymentState
from tillbridge.errors import DomainError
from tillbridge.observability.redaction import Redactor
from tillbridge.payments.contract import (
    BUSY_PREFIX,
    Connector,
    ConnectorEvent,
    ConnectorResult,
    Evidence,
    Family,
)
from tillbridge.payments.families import Lease, RecoverFn, RecoveryPolicy, Snapshot
from tillbridge.store import payments_repo as repo
from tillbridge.store.db import Database

log = structlog.get_logger("tillbridge.terminals")

#: How long a payment may wait for a busy terminal before it is canceled.
DEFAULT_START_TIMEOUT: Final = timedelta(seconds=120)
#: How often a running payment looks for an abort requested from another process.
CANCEL_POLL_S: Final = 0.5
#: Terminals: ask at once (before the next sale replaces the terminal's "last transaction"),
#: then after 2, 10 and 30 s, but only when the terminal could not be asked at all.
CARD_PRESENT_RECOVERY: Final = RecoveryPolicy(
    backoff=(timedelta(seconds=2), timedelta(seconds=10), timedelta(seconds=30)),
    immediate=True,
    ask_again_when_answered=False,
)


def terminal_key(terminal: str) -> str:
    """The job key that serializes everything one terminal does (the terminal's lease)."""
    return f"terminal:{terminal}"


@dataclass(slots=True)
class TerminalSide:
    """The terminal's rows of a :class:`~tillbridge.payments.families.Snapshot`."""

    tp: ts.TerminalPayment
    st: ts.TerminalState
    previous_unknown: str | None
    """The terminal's previous payment, if its outcome is still being recovered."""


def side(snap: Snapshot) -> TerminalSide:
    extra = snap.extra
    assert isinstance(extra, TerminalSide)
    return extra


class TerminalCall:
    """The :class:`~tillbridge.payments.contract.Call` of one payment on a terminal."""

    def __init__(self, family: CardPresentFamily, payment_id: str, terminal: str) -> None:
        self.family = family
        self.payment_id = payment_id
        self.terminal = terminal
        self.buffer = EventBuffer(family.events, payment_id, terminal)

    async def emit(self, event: ConnectorEvent) -> None:
        await self.buffer.on_event(event)

    async def persist(self, result: ConnectorResult) -> None:
        """Store the result durably; runs before the terminal's result is acknowledged."""
        buffer, fam = self.buffer, self.family
        async with buffer.lock:
            rows = buffer.drain()
            now = fam.clock()
            rows.append(
                event_row(self.payment_id, self.terminal, "state", "result stored by the bridge",
                          now, data={"outcome": str(result.outcome)})
            )  # fmt: skip
            try:
                async with fam.db.write() as conn:
                    await ts.update_terminal_payment(
                        conn, self.payment_id, now, result_at=now, **ts.result_values(result)
                    )
                    await fam.events.add_rows(conn, rows)
            except BaseException:
                buffer.requeue(rows[:-1])  # keep the display events for a later write
                raise
        fam.events.notify(self.payment_id)


class CardPresentFamily:
    """The card-present runtime of one process (see the module docstring)."""

    family = Family.CARD_PRESENT
    recovery = CARD_PRESENT_RECOVERY
    actor = "terminal-engine"

    def __init__(
        self,
        db: Database,
        connectors: Mapping[str, Connector],
        *,
        redactor: Redactor,
        clock: Clock,
        start_timeout: timedelta = DEFAULT_START_TIMEOUT,
    ) -> None:
        self.db = db
        self.connectors = {n: c for n, c in connectors.items() if c.family == self.family}
        self.redactor = redactor
        self.clock = clock
        self.start_timeout = start_timeout
        #: How long a job waits for the in-process link lock (normally free: jobs of one
        #: terminal are serialized by their queue key; only local tools compete for it).
        self.lock_wait_s = 5.0
        self.events = EventLog(db, lambda: self.clock())
        self.sessions = TerminalSessions(list(self.connectors))

    # creating and leasing -----------------------------------------------------------------------

    def job_key(self, connector: str, payment_id: str) -> str:
        return terminal_key(connector)

    async def on_created(
        self, conn: AsyncConnection, p: Payment, op: Operation, now: datetime
    ) -> None:
        tp = ts.TerminalPayment(
            p.id, op.id, p.connector, str(op.kind), start_by=now + self.start_timeout
        )
        await ts.insert_terminal_payment(conn, tp, now)

    @contextlib.asynccontextmanager
    async def lease(self, connector: Connector, payment_id: str) -> AsyncIterator[Lease]:
        async with self.sessions.hold(connector.name, wait_s=self.lock_wait_s) as session:
            yield Lease(connector, state=session)

    async def snapshot(self, conn: AsyncConnection, payment_id: str, operation_id: str) -> Snapshot:
        p, op, tp, st = await ts.load_snapshot(conn, payment_id, operation_id)
        previous_unknown = None
        if st.last_payment_id not in (None, payment_id) and st.last_outcome == "unknown":
            previous_unknown = st.last_payment_id
        return Snapshot(p, op, TerminalSide(tp, st, previous_unknown))

    def ready(self, snap: Snapshot, now: datetime) -> bool:
        s = side(snap)
        caps = self.connectors[snap.p.connector].capabilities
        return s.previous_unknown is None and not (s.st.needs_probe and caps.query_last_only)

    def too_late(self, snap: Snapshot, now: datetime) -> str | None:
        tp = side(snap).tp
        if now <= tp.start_by:
            return None
        waited = int((tp.start_by - snap.p.created_at).total_seconds())
        return (
            f"terminal {tp.terminal} was busy: the payment did not start within {waited} s "
            "and was canceled; nothing was sent to the terminal"
        )

    # before and while sending -------------------------------------------------------------------

    async def before_send(self, lease: Lease, snap: Snapshot, recover: RecoverFn) -> Snapshot:
        """Settle the terminal's previous payment if it is still unknown, and refresh the last
        trace number if the bridge's copy may be stale. Only the terminal's holder writes it."""
        s = side(snap)
        name = snap.p.connector
        if s.previous_unknown is not None:
            async with self.db.read() as conn:
                prev = await ts.get_terminal_payment(conn, s.previous_unknown)
            await recover(prev.payment_id, prev.operation_id)
            async with self.db.read() as conn:
                s.st = await ts.get_state(conn, name)
        if not s.st.needs_probe or not lease.connector.capabilities.query_last_only:
            return snap
        probe = await lease.connector.probe()
        now = self.clock()
        async with self.db.write() as conn:
            if probe.reached:
                values: dict[str, object] = {
                    "online": True, "last_contact_at": now, "last_error": None,
                    "last_trace": probe.trace, "last_receipt": probe.receipt,
                    "needs_probe": False,
                }  # fmt: skip
                await ts.update_state(conn, name, now, **values)
                s.st.last_trace, s.st.last_receipt, s.st.needs_probe = (
                    probe.trace, probe.receipt, False,
                )  # fmt: skip
            else:
                await ts.update_state(conn, name, now, online=False, last_error=probe.detail)
        return snap

    async def on_sending(self, conn: AsyncConnection, snap: Snapshot, now: datetime) -> None:
        s = side(snap)
        await ts.update_terminal_payment(
            conn, snap.p.id, now, sent_at=now,
            previous_echo_id=s.st.last_trace, previous_receipt=s.st.last_receipt,
        )  # fmt: skip
        await ts.update_state(
            conn, snap.p.connector, now, last_payment_id=snap.p.id, last_outcome=None
        )
        s.tp.previous_echo_id, s.tp.sent_at = s.st.last_trace, now

    @contextlib.asynccontextmanager
    async def calling(self, lease: Lease, snap: Snapshot) -> AsyncIterator[TerminalCall]:
        """The call's event buffer and decision-point hook, and the abort watcher."""
        session = lease.state
        assert isinstance(session, ActiveSession)
        call = TerminalCall(self, snap.p.id, snap.p.connector)
        session.payment_id = snap.p.id
        session.buffer = call.buffer
        session.persist = call.persist
        call.buffer.start()
        watcher = asyncio.get_running_loop().create_task(self._watch_abort(session, lease))
        try:
            yield call
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await call.buffer.stop()
            session.persist = None

    async def _watch_abort(self, session: ActiveSession, lease: Lease) -> None:
        """Deliver an abort requested in this process (signal) or another one (the
        ``cancel_requested_at`` column, polled); retry until the terminal takes it."""
        pid = session.payment_id
        assert pid is not None
        while not session.abort_delivered:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.abort_signal.wait(), CANCEL_POLL_S)
            session.abort_signal.clear()
            if not session.abort_wanted:
                async with self.db.read() as conn:
                    tp = await ts.get_terminal_payment(conn, pid)
                session.abort_wanted = tp.cancel_requested_at is not None
            if session.abort_wanted and lease.connector.capabilities.cancel:
                session.abort_delivered = await lease.connector.cancel()

    # results ------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def result_rows(self, lease: Lease | None) -> AsyncIterator[list[Any]]:
        """The display events buffered for the result's transaction (given back on failure)."""
        session = lease.state if lease is not None else None
        buffer = session.buffer if isinstance(session, ActiveSession) else None
        if buffer is None:
            yield []
            return
        async with buffer.lock:
            rows = buffer.drain()
            try:
                yield rows
            except BaseException:
                buffer.requeue(rows)
                raise

    async def on_result(
        self,
        conn: AsyncConnection,
        snap: Snapshot,
        result: ConnectorResult,
        now: datetime,
        rows: list[Any],
    ) -> None:
        """Evidence (identifiers, masked PAN, receipts) and the terminal's contact state."""
        await ts.update_terminal_payment(conn, snap.p.id, now, **ts.result_values(result))
        contact = _contact(result, now)
        if result.outcome != Outcome.UNKNOWN or snap.p.state != PaymentState.UNKNOWN:
            contact["last_outcome"] = str(result.outcome)
        await ts.update_state(conn, snap.p.connector, now, **contact)
        await self.events.add_rows(conn, rows)

    # recovery -----------------------------------------------------------------------------------

    def evidence(self, snap: Snapshot) -> Evidence:
        tp = side(snap).tp
        return Evidence(
            trace_number=tp.trace_number,
            receipt_number=tp.receipt_number,
            previous_trace_number=tp.previous_echo_id,
        )

    def handed_over(self, snap: Snapshot) -> bool:
        return side(snap).tp.needs_operator

    def superseded(self, snap: Snapshot) -> bool:
        return side(snap).st.last_payment_id != snap.p.id

    async def note(self, conn: AsyncConnection, snap: Snapshot, text: str, now: datetime) -> None:
        await self.events.add(conn, snap.p.id, snap.p.connector, "state", text)

    async def on_query(
        self, conn: AsyncConnection, snap: Snapshot, asked: int, text: str, now: datetime
    ) -> None:
        await ts.update_terminal_payment(conn, snap.p.id, now, recovery_attempts=asked)
        await self.events.add(conn, snap.p.id, snap.p.connector, "state", text)

    def instruction(self, snap: Snapshot) -> str:
        """What an operator does with a payment recovery could not settle."""
        tp = side(snap).tp
        ids = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("trace", tp.trace_number),
                ("receipt", tp.receipt_number),
                ("previous trace", tp.previous_echo_id),
            )
            if value
        )
        return (
            f"Outcome unknown: check the journal of terminal {tp.terminal} for a {tp.kind} of "
            f"{snap.p.amount}{f' ({ids})' if ids else ''}, or the merchant's acquirer "
            f"statement. Then run `tillbridge payments resolve {snap.p.id} --as "
            'succeeded|failed --reason "..."`. '
            "Do not repeat the payment until then: the card may have been charged."
        )

    async def on_give_up(
        self, conn: AsyncConnection, snap: Snapshot, why: str, text: str, now: datetime
    ) -> None:
        tp = side(snap).tp
        await ts.update_terminal_payment(
            conn, snap.p.id, now, needs_operator=True, detail=f"{why}. {text}"
        )
        # The bridge's copy of the last trace may now be stale: ask before the next sale.
        await ts.update_state(conn, tp.terminal, now, needs_probe=True, last_outcome="operator")
        await self.events.add(conn, snap.p.id, tp.terminal, OPERATOR, text, data={"reason": why})

    # cancel -------------------------------------------------------------------------------------

    async def request_abort(self, p: Payment, actor: str) -> Payment:
        """Ask the terminal to abort the running payment ``p``. Never moves money.

        Records the request (so a worker in another process sees it) and, if this process runs
        the payment, signals the running call at once. The payment's own result says whether the
        abort took effect (``declined``) or came too late (``captured``).
        """
        c = self.connectors.get(p.connector)
        if c is None or not c.capabilities.cancel:
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
                    conn, action="payment.cancel_requested", actor=actor, subject_type="payment",
                    subject_id=p.id, payload={"state": str(p.state), "terminal": p.connector},
                    redactor=self.redactor,
                )  # fmt: skip
        self.events.notify(p.id)
        session = self.sessions.active(p.connector)
        if session is not None and session.payment_id == p.id:
            session.abort_wanted = True
            session.abort_signal.set()
        return p

    def notify(self, payment_id: str) -> None:
        self.events.notify(payment_id)

    async def on_payment_change(
        self, conn: AsyncConnection, p: Payment, previous: PaymentState | None
    ) -> None:
        """Payment listener: every state change of a terminal payment becomes an event."""
        if p.connector not in self.connectors or previous == p.state:
            return
        text = f"payment {p.state}"
        if p.failure_reason and p.state != PaymentState.CAPTURED:
            text = f"{text}: {p.failure_reason}"
        data = {"state": str(p.state), "previous": str(previous) if previous else None}
        await self.events.add(conn, p.id, p.connector, "state", text, data=data)


def _contact(result: ConnectorResult, now: datetime) -> dict[str, Any]:
    """``terminal_state`` columns after an exchange: reached or not, and what it told us."""
    if result.outcome == Outcome.NOT_SENT:
        # A terminal that answered "busy" is online; one that could not be reached is not.
        busy = (result.detail or "").startswith(BUSY_PREFIX)
        return {"online": busy, "last_error": result.detail}
    values: dict[str, Any] = {"online": True, "last_contact_at": now}
    values["last_error"] = result.detail if result.outcome == Outcome.UNKNOWN else None
    if result.trace_number:
        values.update(last_trace=result.trace_number, needs_probe=False)
    if result.receipt_number:
        values["last_receipt"] = result.receipt_number
    if result.terminal_id:
        values["terminal_tid"] = result.terminal_id
    return values
