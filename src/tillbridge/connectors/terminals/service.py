"""Terminals for the API and the CLI: status, end of day, operator input and events.

* :meth:`TerminalService.status` combines the configuration, the persisted ``terminal_state``
  (last contact, last trace), the payments queued or running on the terminal, and whether this
  process holds its link right now. It never talks to the terminal: asking would need the
  terminal's lease, and a status page must not wait behind a customer's payment.
* End of day is a job keyed like the terminal's payments (it needs the link). It is not
  idempotent on the terminal (a second one closes an empty batch), so an ``unknown`` outcome
  is stored as such, never retried on its own.
* Input goes to the terminal's running payment. What a terminal can be sent is its connector's
  ``input`` capability (ZVT: only ``abort``; PIN, confirmations and selections happen on the
  terminal itself): anything else is refused with a 422 before anything is recorded. ``abort``
  is the engine's cancel of the running payment.
"""

from __future__ import annotations

from typing import Any, Final

from tillbridge.audit.log import record as audit_record
from tillbridge.connectors.terminals import store as ts
from tillbridge.connectors.terminals.events import INPUT, EventLog
from tillbridge.connectors.terminals.family import CardPresentFamily, terminal_key
from tillbridge.domain.payments import new_id
from tillbridge.domain.states import Outcome
from tillbridge.domain.views import iso_utc
from tillbridge.errors import NotFound, NotSupported, TerminalBusy, ValidationError
from tillbridge.payments.contract import Connector
from tillbridge.payments.engine import PaymentEngine
from tillbridge.queue import RetryLater, enqueue
from tillbridge.store import payments_repo as repo

SETTLE_JOB: Final = "terminal.settle"
#: Every input action the API knows; a terminal delivers those in its ``input`` capability.
INPUT_ACTIONS: Final = ("abort", "confirm", "decline", "text")


def _iso(value: Any) -> str | None:
    return None if value is None else iso_utc(value)


class TerminalService:
    """The terminals of one runtime (see the module docstring)."""

    def __init__(self, engine: PaymentEngine, family: CardPresentFamily) -> None:
        self.engine = engine
        self.family = family
        self.db = engine.db

    @property
    def events(self) -> EventLog:
        return self.family.events

    @property
    def names(self) -> list[str]:
        return sorted(self.family.connectors)

    def connector(self, terminal: str) -> Connector:
        """The terminal's connector; 404 ``unknown_terminal`` if there is no such terminal."""
        try:
            return self.family.connectors[terminal]
        except KeyError:
            raise NotFound(f"no terminal named {terminal!r}", code="unknown_terminal") from None

    def describe(self, terminal: str) -> dict[str, Any]:
        c = self.connector(terminal)
        caps = c.capabilities
        info = c.describe()
        return {
            "id": terminal,
            "type": info.get("type"),
            "protocol": info.get("type"),
            "link": info.get("link"),
            "store": info.get("store"),
            "problem": c.problem,
            "currency": info.get("currency"),
            "charset": info.get("charset"),
            "capabilities": {
                "abort": caps.cancel,
                "refund": caps.standalone_refund,
                "reversal": caps.reversal,
                "status_query": "last_transaction" if caps.query_last_only else "by_reference",
                "end_of_day": caps.settle,
                "receipts": caps.receipts,
                "input": sorted(caps.input),
            },
        }

    # status -------------------------------------------------------------------------------------

    async def status(self, terminal: str) -> dict[str, Any]:
        out = self.describe(terminal)
        async with self.db.read() as conn:
            st = await ts.get_state(conn, terminal)
            counts = await ts.queue_counts(conn, terminal)
            running = await ts.running_payment(conn, terminal)
            last_eod = await ts.list_settlements(conn, terminal, limit=1)
        out.update(
            online=st.online,
            busy=bool(counts["running"]) or self.family.sessions.busy(terminal),
            current_payment_id=running,
            queued_payments=counts["queued"],
            last_contact_at=_iso(st.last_contact_at),
            last_error=st.last_error,
            terminal_tid=st.terminal_tid,
            last_trace_number=st.last_trace,
            last_receipt_number=st.last_receipt,
            last_end_of_day=last_eod[0] if last_eod else None,
        )
        return out

    async def list(self) -> list[dict[str, Any]]:
        return [await self.status(name) for name in self.names]

    # end of day ---------------------------------------------------------------------------------

    async def request_settlement(self, terminal: str, *, actor: str) -> dict[str, Any]:
        """Queue an end of day for ``terminal``; returns the pending settlement."""
        c = self.connector(terminal)
        if not c.capabilities.settle:
            raise NotSupported(f"terminal {terminal} has no end of day")
        sid = new_id("eod")
        now = self.engine.clock()
        currency = str(c.describe().get("currency") or "EUR")
        async with self.db.write() as conn:
            await ts.insert_settlement(conn, sid, terminal, currency, actor, now)
            await enqueue(conn, SETTLE_JOB, {"settlement_id": sid, "terminal": terminal},
                          key=terminal_key(terminal), now=now)  # fmt: skip
            await audit_record(
                conn, action="terminal.end_of_day_requested", actor=actor,
                subject_type="terminal", subject_id=terminal, payload={"settlement_id": sid},
                redactor=self.engine.redactor,
            )  # fmt: skip
            return await ts.get_settlement(conn, terminal, sid)

    async def settle(self, settlement_id: str, terminal: str) -> None:
        """Job handler for ``terminal.settle``; runs the end of day once."""
        async with self.db.read() as conn:
            row = await ts.get_settlement(conn, terminal, settlement_id)
        clock = self.engine.clock
        if row["state"] == "running":
            # A previous run died while the terminal closed its day: only its report can tell.
            async with self.db.write() as conn:
                await ts.update_settlement(
                    conn, settlement_id, state="unknown", finished_at=clock(),
                    detail="the bridge stopped during the end of day: print the terminal's "
                    "last end-of-day report before starting another one",
                )  # fmt: skip
            return
        if row["state"] != "pending":
            return
        c = self.connector(terminal)
        try:
            async with self.family.sessions.hold(terminal, wait_s=self.family.lock_wait_s):
                async with self.db.write() as conn:
                    # Claimed before sending: a rerun after a crash finds "running", not
                    # "pending", and never closes the day twice.
                    await ts.update_settlement(conn, settlement_id, state="running")
                result = await c.settle()
        except TerminalBusy as exc:
            raise RetryLater(exc.message, after=1.0) from None
        now = clock()
        state = {Outcome.SUCCEEDED: "succeeded", Outcome.DECLINED: "declined",
                 Outcome.NOT_SENT: "failed"}.get(result.outcome, "unknown")  # fmt: skip
        async with self.db.write() as conn:
            await ts.update_settlement(
                conn,
                settlement_id,
                state=state,
                total_minor=result.total.minor if result.total is not None else None,
                count=result.count,
                schemes=[
                    {"scheme": s.scheme, "count": s.count, "total": s.total.minor}
                    for s in result.schemes
                ],
                first_receipt=result.first_receipt_number,
                last_receipt=result.last_receipt_number,
                trace_number=result.trace_number,
                result_code=result.result_code,
                result_text=result.result_text,
                receipt=list(result.receipt),
                detail=result.detail,
                finished_at=now,
            )
            contact: dict[str, Any] = (
                {"online": False, "last_error": result.detail}
                if result.outcome == Outcome.NOT_SENT
                else {"online": True, "last_contact_at": now}
            )
            await ts.update_state(conn, terminal, now, **contact)
            await audit_record(
                conn, action="terminal.end_of_day", actor="terminal-engine",
                subject_type="terminal", subject_id=terminal,
                payload={"settlement_id": settlement_id, "state": state,
                         "total": result.total.minor if result.total else None},
                redactor=self.engine.redactor,
            )  # fmt: skip

    async def settlement(self, terminal: str, settlement_id: str) -> dict[str, Any]:
        self.connector(terminal)
        async with self.db.read() as conn:
            return await ts.get_settlement(conn, terminal, settlement_id)

    # input --------------------------------------------------------------------------------------

    async def submit_input(
        self, terminal: str, action: str, text: str | None, *, actor: str
    ) -> dict[str, Any]:
        """Deliver an operator's input to the terminal's running payment, and record it.

        Refused (422 ``not_supported``) when the terminal cannot take ``action``; idempotent in
        effect: a repeated abort of the same payment is one abort request.
        """
        c = self.connector(terminal)
        if action not in INPUT_ACTIONS:
            raise ValidationError(
                f"action must be one of {', '.join(INPUT_ACTIONS)}", code="invalid_input"
            )
        supported = sorted(c.capabilities.input)
        if action not in c.capabilities.input:
            raise NotSupported(
                f"terminal {terminal} cannot be sent {action!r}: "
                + (
                    f"it takes {', '.join(supported)} from the bridge; PIN, confirmations and "
                    "selections are entered on the terminal itself"
                    if supported
                    else "it takes no input from the bridge"
                ),
                supported=supported,
            )
        async with self.db.read() as conn:
            running = await ts.running_payment(conn, terminal)
        delivered = False
        if running is not None:
            async with self.db.write() as conn:
                label = f"input from {actor}: {action}" + (f" ({text})" if text else "")
                data = {"action": action, "delivered": True}
                await self.events.add(conn, running, terminal, INPUT, label, data=data)
            self.events.notify(running)
            if action == "abort":
                await self.engine.cancel(running, actor=actor)
                delivered = True
            else:
                session = self.family.sessions.active(terminal)
                if session is not None and session.payment_id == running:
                    delivered = await c.deliver_input(action, text)
        async with self.db.write() as conn:
            await audit_record(
                conn, action="terminal.input", actor=actor, subject_type="terminal",
                subject_id=terminal,
                payload={"action": action, "payment_id": running, "delivered": delivered},
                redactor=self.engine.redactor,
            )  # fmt: skip
        if running is None:
            detail = "no payment is running on this terminal; the input was recorded only"
        elif delivered:
            detail = f"{action} sent to the terminal; the payment's result tells what happened"
        else:
            detail = "the payment runs in another process: the input was recorded only"
        return {
            "terminal": terminal,
            "action": action,
            "payment_id": running,
            "recorded": True,
            "delivered": delivered,
            "supported": supported,
            "detail": detail,
        }

    async def payment_side(self, payment_id: str) -> ts.TerminalPayment:
        async with self.db.read() as conn:
            await repo.get_payment(conn, payment_id)  # 404 not_found for an unknown payment
            return await ts.get_terminal_payment(conn, payment_id)
