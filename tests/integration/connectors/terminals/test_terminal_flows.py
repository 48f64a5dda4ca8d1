"""Terminal payments through the engine against the ZVT simulator over real TCP sockets.

Jobs run on a real worker (``run_until_idle``) over real SQLite and PostgreSQL. What matters is
persisted state (payment, terminal side, events) and what the simulated terminal booked.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from support.terminals import Bridge, authorizations
from tillbridge.domain.states import PaymentState
from tillbridge.simulators.zvt import SimulatorHandle
from tillbridge.store import payments_repo as repo
from tillbridge.store.tables import refunds

pytestmark = pytest.mark.anyio


async def test_purchase_succeeds_with_events_receipts_and_masked_card(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    p = await bridge.pay(1234)
    assert p.state == PaymentState.CAPTURED and p.captured_minor == 1234
    tp = await bridge.terminal_side(p.id)
    assert tp.result_outcome == "succeeded"
    assert tp.trace_number and tp.receipt_number and tp.auth_code
    assert tp.masked_pan == "672559******1234"
    assert tp.customer_receipt and tp.merchant_receipt
    assert tp.sent_at is not None and tp.previous_echo_id is None  # fresh terminal
    kinds = [e.kind for e in await bridge.events(p.id)]
    assert {"display", "prompt", "receipt_line", "state"} <= set(kinds)
    texts = " ".join(e.text for e in await bridge.events(p.id))
    assert "payment in_progress" in texts and "payment captured" in texts
    assert sim.terminal.charges == 1
    # Nothing but the masked PAN anywhere we store card data.
    for row in await bridge.all_event_rows():
        assert "672559" not in row["text"] or "******" in row["text"]


async def test_second_payment_carries_the_previous_trace(bridge: Bridge) -> None:
    first = await bridge.pay(1000)
    second = await bridge.pay(2000)
    assert second.state == PaymentState.CAPTURED
    t1, t2 = await bridge.terminal_side(first.id), await bridge.terminal_side(second.id)
    assert t2.previous_echo_id == t1.trace_number  # persisted before the second was sent


async def test_host_decline_is_declined_with_the_reason(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    p = await bridge.pay(2051)
    assert p.state == PaymentState.DECLINED
    assert p.failure_reason is not None and "Nicht genehmigt" in p.failure_reason
    assert sim.terminal.charges == 0


async def test_customer_cancel_6c_is_declined_with_the_reason(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    p = await bridge.pay(2052)
    assert p.state == PaymentState.DECLINED
    assert p.failure_reason is not None and "abort" in p.failure_reason
    tp = await bridge.terminal_side(p.id)
    assert tp.result_code == "6C"
    assert sim.terminal.charges == 0


async def test_standalone_refund_ends_refunded(bridge: Bridge, sim: SimulatorHandle) -> None:
    p = await bridge.pay(500, kind="refund")
    assert p.state == PaymentState.REFUNDED
    assert p.refunded_minor == 500
    async with bridge.db.read() as conn:
        [op] = await repo.list_operations(conn, p.id)
        [row] = (await conn.execute(select(refunds).where(refunds.c.payment_id == p.id))).all()
    assert str(op.kind) == "refund" and row.amount_minor == 500
    assert [t.kind for t in sim.terminal.journal] == ["refund"]
    assert sim.terminal.charges == 0


async def test_unreachable_terminal_fails_not_sent(bridge: Bridge, sim: SimulatorHandle) -> None:
    await sim.close()  # nothing listens on the port any more
    p = await bridge.pay(1234)
    assert p.state == PaymentState.FAILED
    assert p.failure_reason is not None and "cannot connect" in p.failure_reason
    status = await bridge.rt.terminals.status("lane1")
    assert status["online"] is False and "cannot connect" in status["last_error"]


async def test_terminal_answering_busy_fails_clearly(bridge: Bridge, sim: SimulatorHandle) -> None:
    await bridge.pay(1000)  # registered, trace known
    sim.configure(busy=True)
    p = await bridge.pay(1234)
    assert p.state == PaymentState.FAILED
    assert p.failure_reason is not None and "busy" in p.failure_reason
    assert sim.terminal.busy_rejections >= 1 and sim.terminal.charges == 1


async def test_job_delivered_twice_runs_once(bridge: Bridge, sim: SimulatorHandle) -> None:
    p = await bridge.pay(1234)
    await bridge.execute(p.id)  # at-least-once delivery: a second run
    assert (await bridge.payment(p.id)).state == PaymentState.CAPTURED
    assert sim.terminal.charges == 1 and authorizations(sim) == 1


async def test_end_of_day_stores_totals(bridge: Bridge) -> None:
    await bridge.pay(1000)
    await bridge.pay(2500)
    await bridge.pay(2051)  # declined: not in the totals
    eod = await bridge.rt.terminals.request_settlement("lane1", actor="test")
    assert eod["state"] == "pending"
    await bridge.run_jobs()
    done = await bridge.rt.terminals.settlement("lane1", eod["id"])
    assert done["state"] == "succeeded"
    assert done["total"] == 3500 and done["count"] == 2
    assert done["schemes"] == [{"scheme": "girocard", "count": 2, "total": 3500}]
    status = await bridge.rt.terminals.status("lane1")
    assert status["last_end_of_day"]["id"] == eod["id"]
