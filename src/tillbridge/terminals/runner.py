"""Running one payment on a terminal: the connector call with its event buffer, the
``persist_result`` hook and the abort watcher wired to the session that holds the link."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

import structlog

from tillbridge.domain.payments import Payment
from tillbridge.domain.states import OperationKind, Outcome
from tillbridge.errors import TerminalBusy
from tillbridge.terminals import store as ts
from tillbridge.terminals.contract import (
    PurchaseRequest,
    RefundRequest,
    TerminalResult,
    TransactionKind,
)
from tillbridge.terminals.events import EventBuffer
from tillbridge.terminals.handles import TerminalHandle
from tillbridge.terminals.results import BUSY_PREFIX
from tillbridge.terminals.sessions import ActiveSession

if TYPE_CHECKING:
    from tillbridge.terminals.engine import TerminalEngine

log = structlog.get_logger("tillbridge.terminals")

#: How often a running payment looks for an abort requested from another process.
CANCEL_POLL_S: Final = 0.5


def transaction_kind(kind: str) -> TransactionKind:
    return TransactionKind.REFUND if kind == str(OperationKind.REFUND) else TransactionKind.PURCHASE


async def run_payment(
    engine: TerminalEngine,
    session: ActiveSession,
    h: TerminalHandle,
    p: Payment,
    tp: ts.TerminalPayment,
) -> TerminalResult:
    """Send the payment (already committed ``in_progress``) and return the terminal's answer.

    Never raises for terminal or transport trouble: those are outcomes (``not_sent`` when the
    terminal refused as busy, ``unknown`` for anything unexpected once sending began).
    """
    buffer = EventBuffer(engine.events, p.id, h.name)
    session.payment_id = p.id
    session.buffer = buffer
    session.persist = engine.results.persist_hook(p.id, h.name, buffer)
    buffer.start()
    watcher = asyncio.get_running_loop().create_task(watch_abort(engine, session, h, p.id))
    try:
        if tp.kind == str(OperationKind.REFUND):
            refund = RefundRequest(p.amount, tp.operation_id, buffer.on_event)
            return await h.connector.refund(refund)
        return await h.connector.purchase(
            PurchaseRequest(p.amount, tp.operation_id, buffer.on_event)
        )
    except TerminalBusy as exc:
        # The terminal itself refused (another cash register uses it): nothing started.
        detail = f"{BUSY_PREFIX}: {exc.message}"
        return TerminalResult(Outcome.NOT_SENT, transaction_kind(tp.kind), detail=detail)
    except Exception as exc:  # after sending began, anything unexpected may have charged
        log.exception("terminal.call_failed", payment_id=p.id, terminal=h.name)
        detail = type(exc).__name__
        return TerminalResult(Outcome.UNKNOWN, transaction_kind(tp.kind), detail=detail)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await buffer.stop()
        session.persist = None


async def watch_abort(
    engine: TerminalEngine, session: ActiveSession, h: TerminalHandle, pid: str
) -> None:
    """Deliver an abort requested in this process (signal) or another one (the
    ``cancel_requested_at`` column, polled); retry until the terminal takes it."""
    while not session.abort_delivered:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.abort_signal.wait(), CANCEL_POLL_S)
        session.abort_signal.clear()
        if not session.abort_wanted:
            async with engine.db.read() as conn:
                tp = await ts.get_terminal_payment(conn, pid)
            session.abort_wanted = tp.cancel_requested_at is not None
        if session.abort_wanted:
            session.abort_delivered = await h.connector.cancel()
