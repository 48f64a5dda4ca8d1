"""Terminal administration: status, end of day (settlement) and operator input.

* :meth:`TerminalAdmin.status` combines the config, the persisted ``terminal_state`` (last
  contact, last trace), the payments queued or running on the terminal, and whether this
  process holds its link right now. It never talks to the terminal: asking would need the
  terminal's lease, and a status page must not wait behind a customer's payment.
* End of day is a job keyed like the terminal's payments (it needs the link). It is not
  idempotent on the terminal (a second one closes an empty batch), so an ``unknown`` outcome
  is stored as such, never retried on its own.
* Input: ZVT terminals take PIN, confirmation and selection on the terminal itself. The bridge
  records every input (event and audit) and can deliver only ``abort`` (06 B0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from tillbridge.audit.log import record as audit_record
from tillbridge.domain.payments import new_id
from tillbridge.domain.states import Outcome
from tillbridge.errors import TerminalBusy, ValidationError
from tillbridge.queue import RetryLater, enqueue
from tillbridge.store import payments_repo as repo
from tillbridge.terminals import store as ts
from tillbridge.terminals.events import INPUT

if TYPE_CHECKING:
    from tillbridge.terminals.engine import TerminalEngine

INPUT_ACTIONS: Final = ("abort", "confirm", "decline", "text")
#: What a ZVT terminal lets the bridge deliver.
ZVT_DELIVERABLE: Final = frozenset({"abort"})


def _iso(value: Any) -> str | None:
    u = ts.utc(value)
    return None if u is None else u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TerminalAdmin:
    def __init__(self, engine: TerminalEngine) -> None:
        self.e = engine

    # status -------------------------------------------------------------------------------------

    async def status(self, terminal: str) -> dict[str, Any]:
        h = self.e.handle(terminal)
        async with self.e.db.read() as conn:
            st = await ts.get_state(conn, terminal)
            counts = await ts.queue_counts(conn, terminal)
            running = await ts.running_payment(conn, terminal)
            last_eod = await ts.list_settlements(conn, terminal, limit=1)
        out = h.describe()
        out.update(
            online=st.online,
            busy=bool(counts["running"]) or self.e.sessions.busy(terminal),
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
        return [await self.status(name) for name in sorted(self.e.handles)]

    # end of day ---------------------------------------------------------------------------------

    async def request_settlement(self, terminal: str, *, actor: str) -> dict[str, Any]:
        """Queue an end of day for ``terminal``; returns the pending settlement."""
        from tillbridge.terminals.engine import SETTLE_JOB, terminal_key

        h = self.e.handle(terminal)
        if not h.connector.capabilities.can_settle:
            raise ValidationError(f"terminal {terminal} has no end of day", code="not_supported")
        sid = new_id("eod")
        now = self.e.clock()
        async with self.e.db.write() as conn:
            await ts.insert_settlement(conn, sid, terminal, h.currency, actor, now)
            await enqueue(conn, SETTLE_JOB, {"settlement_id": sid, "terminal": terminal},
                          key=terminal_key(terminal), now=now)  # fmt: skip
            await audit_record(
                conn, action="terminal.end_of_day_requested", actor=actor,
                subject_type="terminal", subject_id=terminal, payload={"settlement_id": sid},
                redactor=self.e.payments.redactor,
            )  # fmt: skip
            return await ts.get_settlement(conn, terminal, sid)

    async def settle(self, settlement_id: str, terminal: str) -> None:
        """Job handler for ``terminal.settle``; runs the end of day once."""
        async with self.e.db.read() as conn:
            row = await ts.get_settlement(conn, terminal, settlement_id)
        if row["state"] == "running":
            # A previous run died while the terminal closed its day: only its report can tell.
            async with self.e.db.write() as conn:
                await ts.update_settlement(
                    conn, settlement_id, state="unknown", finished_at=self.e.clock(),
                    detail="the bridge stopped during the end of day: print the terminal's "
                    "last end-of-day report before starting another one",
                )  # fmt: skip
            return
        if row["state"] != "pending":
            return
        h = self.e.handle(terminal)
        try:
            async with self.e.sessions.hold(terminal, wait_s=5.0):
                async with self.e.db.write() as conn:
                    # Claimed before sending: a rerun after a crash finds "running", not
                    # "pending", and never closes the day twice.
                    await ts.update_settlement(conn, settlement_id, state="running")
                result = await h.connector.settle()
        except TerminalBusy as exc:
            raise RetryLater(exc.message, after=1.0) from None
        now = self.e.clock()
        state = {Outcome.SUCCEEDED: "succeeded", Outcome.DECLINED: "declined",
                 Outcome.NOT_SENT: "failed"}.get(result.outcome, "unknown")  # fmt: skip
        async with self.e.db.write() as conn:
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
                redactor=self.e.payments.redactor,
            )  # fmt: skip

    async def settlement(self, terminal: str, settlement_id: str) -> dict[str, Any]:
        self.e.handle(terminal)
        async with self.e.db.read() as conn:
            return await ts.get_settlement(conn, terminal, settlement_id)

    # input --------------------------------------------------------------------------------------

    async def submit_input(
        self, terminal: str, action: str, text: str | None, *, actor: str
    ) -> dict[str, Any]:
        """Record an operator's input for the terminal's running payment and deliver what the
        protocol allows (ZVT: ``abort`` only). Idempotent in effect: a repeated abort of the
        same payment is one abort request."""
        h = self.e.handle(terminal)
        if action not in INPUT_ACTIONS:
            raise ValidationError(
                f"action must be one of {', '.join(INPUT_ACTIONS)}", code="invalid_input"
            )
        async with self.e.db.read() as conn:
            running = await ts.running_payment(conn, terminal)
        deliverable = action in ZVT_DELIVERABLE and h.connector.capabilities.can_abort
        delivered = False
        if running is not None:
            async with self.e.db.write() as conn:
                label = f"input from {actor}: {action}" + (f" ({text})" if text else "")
                data = {"action": action, "delivered": deliverable}
                await self.e.events.add(conn, running, terminal, INPUT, label, data=data)
            self.e.events.notify(running)
            if deliverable:
                async with self.e.db.read() as conn:
                    p = await repo.get_payment(conn, running)
                await self.e.request_cancel(p, actor=actor)
                delivered = True
        async with self.e.db.write() as conn:
            await audit_record(
                conn, action="terminal.input", actor=actor, subject_type="terminal",
                subject_id=terminal,
                payload={"action": action, "payment_id": running, "delivered": delivered},
                redactor=self.e.payments.redactor,
            )  # fmt: skip
        if running is None:
            detail = "no payment is running on this terminal; the input was recorded only"
        elif delivered:
            detail = "abort sent to the terminal; the payment's result tells whether it stopped"
        else:
            detail = (
                f"{h.protocol.upper()} terminals take PIN, confirmations and selections on the "
                "terminal itself; the input was recorded, not delivered. Only 'abort' can be "
                "delivered."
            )
        return {
            "terminal": terminal,
            "action": action,
            "payment_id": running,
            "recorded": True,
            "delivered": delivered,
            "supported": sorted(ZVT_DELIVERABLE) if h.connector.capabilities.can_abort else [],
            "detail": detail,
        }
