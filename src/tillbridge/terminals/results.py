"""Writing what a terminal answered: the result hook before acknowledgement, and outcomes.

Two writes carry money evidence, and both are synchronous (the caller waits for the commit):

* :meth:`ResultWriter.persist_hook` builds the connector's ``persist_result`` for one payment.
  It runs at the protocol's decision point (ZVT: before the Status-Information is
  acknowledged) and stores the terminal's identifiers, masked PAN and receipts, plus the
  display events collected so far. If it raises, the connector refuses the result.
* :meth:`ResultWriter.apply` commits an outcome: payment state (through the payment service,
  so audit and listeners see it), operation outcome, evidence and the terminal's contact state.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tillbridge.domain.payments import Operation, Payment
from tillbridge.domain.states import Outcome, PaymentState
from tillbridge.errors import ConcurrentUpdate
from tillbridge.services.payments import PaymentService
from tillbridge.store import payments_repo as repo
from tillbridge.store.db import Database
from tillbridge.terminals import store as ts
from tillbridge.terminals.contract import TerminalResult
from tillbridge.terminals.events import EventBuffer, EventLog, event_row

#: How the engine words a result the terminal refused as busy (nothing was started).
BUSY_PREFIX = "terminal busy"


class ResultWriter:
    """Persists terminal answers for one engine."""

    def __init__(
        self,
        db: Database,
        payments: PaymentService,
        events: EventLog,
        clock: Callable[[], Callable[[], datetime]],
    ) -> None:
        self.db = db
        self.payments = payments
        self.events = events
        self._clock = clock

    def clock(self) -> datetime:
        # The engine's clock may be replaced (tests move it); always read it through the engine.
        return self._clock()()

    def persist_hook(
        self, payment_id: str, terminal: str, buffer: EventBuffer
    ) -> Callable[[TerminalResult], Any]:
        async def persist(result: TerminalResult) -> None:
            """Store the result durably; runs before the terminal's result is acknowledged."""
            async with buffer.lock:
                rows = buffer.drain()
                now = self.clock()
                rows.append(
                    event_row(payment_id, terminal, "state", "result stored by the bridge", now,
                              data={"outcome": str(result.outcome)})
                )  # fmt: skip
                try:
                    async with self.db.write() as conn:
                        await ts.update_terminal_payment(
                            conn, payment_id, now, result_at=now, **ts.result_values(result)
                        )
                        await self.events.add_rows(conn, rows)
                except BaseException:
                    buffer.requeue(rows[:-1])  # keep the display events for a later write
                    raise
            self.events.notify(payment_id)

        return persist

    # applying results ---------------------------------------------------------------------------

    async def apply(
        self,
        payment_id: str,
        result: TerminalResult,
        *,
        actor: str,
        buffer: EventBuffer | None = None,
        known: tuple[Payment, Operation] | None = None,
    ) -> Payment:
        """Commit a terminal's answer for ``payment_id``; idempotent.

        Evidence (identifiers, masked PAN, receipts) is always stored. The state changes only
        from ``created`` / ``in_progress`` / ``unknown``: a payment an operator settled meanwhile
        keeps the operator's decision. A second ``unknown`` changes nothing. ``known`` is the
        payment and operation as the caller last saved them (saves two reads); the version
        check catches a concurrent change, and then everything is read afresh.
        """
        async with buffer.lock if buffer is not None else contextlib.nullcontext():
            rows = buffer.drain() if buffer is not None else []
            try:
                try:
                    p = await self._apply_once(payment_id, result, actor, rows, known)
                except ConcurrentUpdate:
                    if known is None:
                        raise
                    p = await self._apply_once(payment_id, result, actor, rows, None)
            except BaseException:
                if buffer is not None:
                    buffer.requeue(rows)
                raise
        self.events.notify(payment_id)
        return p

    async def _apply_once(
        self,
        payment_id: str,
        result: TerminalResult,
        actor: str,
        rows: list[dict[str, Any]],
        known: tuple[Payment, Operation] | None,
    ) -> Payment:
        async with self.db.write() as conn:
            if known is not None:
                p, op = known
            else:
                p = await repo.get_payment(conn, payment_id)
                tp = await ts.get_terminal_payment(conn, payment_id)
                op = await repo.get_operation(conn, tp.operation_id)
            now = self.clock()
            await ts.update_terminal_payment(conn, payment_id, now, **ts.result_values(result))
            contact = _contact(result, now)
            if result.outcome != Outcome.UNKNOWN or p.state != PaymentState.UNKNOWN:
                contact["last_outcome"] = str(result.outcome)
            await ts.update_state(conn, p.connector, now, **contact)
            await self.events.add_rows(conn, rows)
            open_states = (PaymentState.CREATED, PaymentState.IN_PROGRESS, PaymentState.UNKNOWN)
            if p.state not in open_states or (
                result.outcome == Outcome.UNKNOWN and p.state == PaymentState.UNKNOWN
            ):
                return p
            reason = None
            if result.outcome != Outcome.SUCCEEDED:
                reason = result.result_text or result.detail or str(result.outcome)
            # Work on copies: a failed version check must leave the caller's objects as saved.
            p, op = copy.deepcopy(p), copy.deepcopy(op)
            op.record(
                result.outcome,
                now,
                reason=reason,
                trace_number=result.trace_number,
                receipt_number=result.receipt_number,
                masked_pan=result.masked_pan,
                auth_code=result.auth_code,
            )
            prev = p.state
            await self.payments.settle_outcome(conn, p, op, result.outcome, reason=reason)
            await repo.save_payment(conn, p)
            await repo.save_operation(conn, op)
            await self.payments.record_change(
                conn, "payment.state_changed", p, actor, prev,
                outcome=str(result.outcome), terminal=p.connector,
            )  # fmt: skip
            return p


def _contact(result: TerminalResult, now: datetime) -> dict[str, Any]:
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
