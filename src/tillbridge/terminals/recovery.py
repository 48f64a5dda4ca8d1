"""Recovering terminal payments whose outcome is unknown: ask the terminal, never resend.

A terminal payment becomes ``unknown`` when the answer was lost after the request may have
reached the terminal: a timeout, a cut link, garbage instead of a result, or the bridge dying
while the terminal ran it. Recovery then asks the terminal (``query_status``) with what was
persisted before sending (the previous trace number) and what the terminal reported before the
link failed (trace and receipt number, stored by ``persist_result``).

Rules, and why:

* Recovery only runs while holding the terminal (same job key / session as payments).
* The first attempt runs at once, before the terminal takes its next payment: ZVT can only
  repeat the *last* transaction, so the question must be asked before another sale replaces
  the answer. Before a payment is sent, the engine also recovers the terminal's previous
  payment if that one is still unknown (:meth:`Recovery.before_next`).
* If another payment was sent to the terminal after this one, its "last transaction" is no
  longer ours: recovery does not guess, it hands the payment to an operator.
* What stays ``unknown`` after :data:`RECOVERY_BACKOFF` is shown with a clear instruction
  (event ``operator``, audit ``payment.needs_operator``) and is settled with
  ``tillbridge payments resolve ID --as succeeded|failed --reason TEXT``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import structlog

from tillbridge.audit.log import record as audit_record
from tillbridge.domain.states import Outcome, PaymentState
from tillbridge.errors import BridgeError, TerminalBusy
from tillbridge.queue import RetryLater, enqueue
from tillbridge.store import payments_repo as repo
from tillbridge.terminals import store as ts
from tillbridge.terminals.contract import StatusQuery, TerminalResult, TransactionKind
from tillbridge.terminals.events import OPERATOR
from tillbridge.terminals.handles import TerminalHandle

if TYPE_CHECKING:
    from tillbridge.terminals.engine import TerminalEngine

log = structlog.get_logger("tillbridge.terminals")

#: Delays before the follow-up status queries (the first one runs at once).
RECOVERY_BACKOFF: Final = (timedelta(seconds=2), timedelta(seconds=10), timedelta(seconds=30))
#: A terminal that just lost a link may still be finishing that session (it answers "busy"):
#: short waits before asking again within one attempt.
BUSY_WAITS_S: Final = (0.2, 0.5, 1.0, 2.0)


#: How a connector's ``query_status`` says it could not ask (ZVT: no connection, or no usable
#: answer to Repeat Receipt). Only then is asking again later worth it.
_NOT_ASKED: Final = ("cannot ask the terminal", "the terminal is busy", "terminal busy")
_NO_REPEAT: Final = "the terminal did not repeat its last transaction"


def could_not_ask(result: TerminalResult) -> bool:
    """True when a still-``unknown`` status query never got the terminal's answer (a link
    problem), as opposed to an answer that proves nothing (worth no second question)."""
    detail = (result.detail or "").lower()
    if detail.startswith(_NOT_ASKED):
        return True
    if detail.startswith(_NO_REPEAT):
        # "aborted: ..." / "refused: ...": the terminal answered; it has nothing to repeat.
        return not any(f": {w}:" in detail for w in ("aborted", "refused"))
    return False


def instruction(payment_id: str, tp: ts.TerminalPayment, amount: str) -> str:
    """What an operator does with a payment recovery could not settle."""
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
        f"{amount}{f' ({ids})' if ids else ''}, or the merchant's acquirer statement. Then run "
        f'`tillbridge payments resolve {payment_id} --as succeeded|failed --reason "..."`. '
        "Do not repeat the payment until then: the card may have been charged."
    )


class Recovery:
    """Recovery of one engine's terminal payments (see the module docstring)."""

    def __init__(self, engine: TerminalEngine) -> None:
        self.e = engine

    async def mark_unknown(self, payment_id: str, reason: str) -> None:
        async with self.e.db.read() as conn:
            tp = await ts.get_terminal_payment(conn, payment_id)
        kind = TransactionKind.REFUND if tp.kind == "refund" else TransactionKind.PURCHASE
        await self.e.apply(
            payment_id, TerminalResult(Outcome.UNKNOWN, kind, detail=reason), actor="recovery"
        )

    async def job(self, payment_id: str) -> None:
        """Job handler for ``terminal.recover``: a follow-up status query."""
        async with self.e.db.read() as conn:
            tp = await ts.get_terminal_payment(conn, payment_id)
        try:
            async with self.e.sessions.hold(tp.terminal, wait_s=5.0):
                await self.recover(payment_id)
        except TerminalBusy as exc:
            raise RetryLater(exc.message, after=1.0) from None

    async def before_next(
        self, h: TerminalHandle, st: ts.TerminalState, previous_unknown: str | None
    ) -> ts.TerminalState:
        """Before a new payment goes to ``h``: settle its previous payment if that is still
        unknown, and refresh the last trace number if the bridge's copy may be stale.
        Returns the terminal's state as it is now (only the terminal's holder writes it)."""
        if previous_unknown is not None:
            await self.recover(previous_unknown)
            async with self.e.db.read() as conn:
                st = await ts.get_state(conn, h.name)
        if not st.needs_probe or h.probe is None:
            return st
        probe = await h.probe()
        now = self.e.clock()
        async with self.e.db.write() as conn:
            if probe.reached:
                values: dict[str, object] = {
                    "online": True, "last_contact_at": now, "last_error": None,
                    "last_trace": probe.trace, "last_receipt": probe.receipt,
                    "needs_probe": False,
                }  # fmt: skip
                await ts.update_state(conn, h.name, now, **values)
                st.last_trace, st.last_receipt, st.needs_probe = probe.trace, probe.receipt, False
            else:
                await ts.update_state(conn, h.name, now, online=False, last_error=probe.detail)
        return st

    async def recover(self, payment_id: str) -> None:
        """One recovery attempt for ``payment_id``; the caller holds the terminal."""
        async with self.e.db.read() as conn:
            p = await repo.get_payment(conn, payment_id)
            tp = await ts.get_terminal_payment(conn, payment_id)
            st = await ts.get_state(conn, tp.terminal)
        if p.state != PaymentState.UNKNOWN or tp.needs_operator:
            return  # settled meanwhile (a late answer or an operator), or already handed over
        h = self.e.handles[tp.terminal]
        if st.last_payment_id != p.id:
            await self.give_up(
                payment_id,
                "another payment ran on the terminal after this one, and the terminal can only "
                "repeat its last transaction",
            )
            return
        query = StatusQuery(
            reference=tp.operation_id,
            kind=TransactionKind.REFUND if tp.kind == "refund" else TransactionKind.PURCHASE,
            amount=p.amount,
            echo_id=tp.trace_number,
            receipt_number=tp.receipt_number,
            previous_echo_id=tp.previous_echo_id,
        )
        await self._note(
            payment_id, tp.terminal, "recovery: asking the terminal for its last transaction"
        )
        result = await self._ask(h, query)
        attempts = tp.recovery_attempts + 1
        async with self.e.db.write() as conn:
            await ts.update_terminal_payment(
                conn, payment_id, self.e.clock(), recovery_attempts=attempts
            )
        if result.outcome in (Outcome.SUCCEEDED, Outcome.DECLINED):
            await self._note(
                payment_id, tp.terminal, f"recovery: {result.detail or result.outcome}"
            )
            await self.e.apply(payment_id, result, actor="recovery")
            return
        await self._note(payment_id, tp.terminal, f"recovery: still unknown ({result.detail})")
        if not could_not_ask(result) or attempts > len(RECOVERY_BACKOFF):
            # The terminal answered and its answer does not prove anything: asking the same
            # question again gives the same answer and only keeps the terminal from working.
            await self.give_up(payment_id, result.detail or "the terminal could not tell")
            return
        async with self.e.db.write() as conn:
            from tillbridge.terminals.engine import RECOVER_JOB, terminal_key

            await enqueue(
                conn,
                RECOVER_JOB,
                {"payment_id": payment_id},
                key=terminal_key(tp.terminal),
                run_after=self.e.clock() + RECOVERY_BACKOFF[attempts - 1],
            )
        log.info("terminal.recovery_scheduled", payment_id=payment_id, attempt=attempts)

    async def _ask(self, h: TerminalHandle, query: StatusQuery) -> TerminalResult:
        """``query_status``, waiting briefly while the terminal finishes a broken session."""
        for wait in (*BUSY_WAITS_S, None):
            try:
                return await h.connector.query_status(query)
            except TerminalBusy as exc:
                if wait is None:
                    detail = f"terminal busy: {exc.message}"
                    return TerminalResult(Outcome.UNKNOWN, query.kind, detail=detail)
                await asyncio.sleep(wait)
            except BridgeError as exc:
                detail = f"cannot ask the terminal: {exc.message}"
                return TerminalResult(Outcome.UNKNOWN, query.kind, detail=detail)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _note(self, payment_id: str, terminal: str, text: str) -> None:
        async with self.e.db.write() as conn:
            await self.e.events.add(conn, payment_id, terminal, "state", text)
        self.e.events.notify(payment_id)

    async def give_up(self, payment_id: str, why: str) -> None:
        """Hand the payment to an operator: instruction as event and audit entry."""
        async with self.e.db.write() as conn:
            p = await repo.get_payment(conn, payment_id)
            tp = await ts.get_terminal_payment(conn, payment_id)
            now = self.e.clock()
            text = instruction(payment_id, tp, str(p.amount))
            await ts.update_terminal_payment(
                conn, payment_id, now, needs_operator=True, detail=f"{why}. {text}"
            )
            # The bridge's copy of the last trace may now be stale: ask before the next sale.
            await ts.update_state(conn, tp.terminal, now, needs_probe=True, last_outcome="operator")
            await self.e.events.add(
                conn, payment_id, tp.terminal, OPERATOR, text, data={"reason": why}
            )
            await audit_record(
                conn,
                action="payment.needs_operator",
                actor="recovery",
                subject_type="payment",
                subject_id=payment_id,
                payload={"state": str(p.state), "terminal": tp.terminal, "reason": why,
                         "instruction": text},
                redactor=self.e.payments.redactor,
            )  # fmt: skip
        self.e.events.notify(payment_id)
        log.warning("terminal.needs_operator", payment_id=payment_id, reason=why)
