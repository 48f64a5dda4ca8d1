"""Unknown outcomes on a terminal: recovery asks the terminal, never resends, and what it cannot
prove goes to an operator. The simulator's amount rules cut the link at known points:
``..97`` before the result is sent, ``..98`` after the bridge acknowledged it (before
Completion), ``..99`` right after the result (not acknowledged)."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from support.terminals import Bridge, authorizations
from tillbridge.audit.tables import audit_log
from tillbridge.connectors.terminals.zvt import ZvtTerminal
from tillbridge.domain.states import PaymentState
from tillbridge.errors import ValidationError
from tillbridge.payments.jobs import RECOVER_JOB
from tillbridge.queue.tables import jobs
from tillbridge.simulators.zvt import SimulatorHandle

pytestmark = pytest.mark.anyio


async def recover_jobs(bridge: Bridge) -> int:
    async with bridge.db.read() as conn:
        rows = await conn.execute(select(jobs.c.id).where(jobs.c.kind == RECOVER_JOB))
        return len(rows.all())


async def test_link_cut_after_approval_before_completion_recovers_succeeded(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    p = await bridge.pay(1098)
    assert p.state == PaymentState.CAPTURED
    tp = await bridge.terminal_side(p.id)
    assert tp.trace_number is not None  # stored by persist_result before the acknowledgement
    assert tp.recovery_attempts == 1
    assert sim.terminal.charges == 1 and authorizations(sim) == 1  # asked, never resent
    assert "Repeat Receipt" in sim.terminal.commands
    texts = [e.text for e in await bridge.events(p.id)]
    assert "payment unknown" in " ".join(texts) and texts[-1] == "payment captured"


async def test_link_cut_right_after_the_result_recovers(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    p = await bridge.pay(1099)
    assert p.state == PaymentState.CAPTURED
    assert sim.terminal.charges == 1 and authorizations(sim) == 1


async def test_link_cut_before_the_result_recovers_from_the_previous_trace(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    await bridge.pay(1000)  # the bridge now knows the terminal's last trace
    p = await bridge.pay(1097)
    assert p.state == PaymentState.CAPTURED
    assert sim.terminal.charges == 2 and authorizations(sim) == 2


async def test_auto_reversed_payment_recovers_declined(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    sim.configure(unacked_policy="reverse")
    await bridge.pay(1000)
    p = await bridge.pay(1099)  # result never acknowledged: this terminal reverses it
    assert p.state == PaymentState.DECLINED
    assert sim.terminal.booked_purchases[-1].amount == 1000


async def test_sent_but_never_reached_is_declined_by_recovery_not_resent(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    """The job comes back after a crash that happened after ``in_progress`` was committed but
    before anything reached the terminal: recovery proves it was never booked."""
    await bridge.pay(1000)
    pid = await bridge.create(1234)
    await bridge.mark_sent(pid)  # committed, then the process "died"
    await bridge.run_jobs()
    p = await bridge.payment(pid)
    assert p.state == PaymentState.DECLINED
    assert p.failure_reason is not None and "never booked" in p.failure_reason
    assert authorizations(sim) == 1 and sim.terminal.charges == 1


async def test_garbage_from_the_terminal_is_unknown_then_recovered(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    await bridge.pay(1000)
    sim.configure(garbage=b"\x15\x03\x69not zvt at all", garbage_command=(0x06, 0x01))
    p = await bridge.pay(1234)
    assert p.state == PaymentState.DECLINED  # the terminal never booked it: provably
    tp = await bridge.terminal_side(p.id)
    assert tp.recovery_attempts == 1
    sim.configure(garbage=None)
    assert (await bridge.pay(1500)).state == PaymentState.CAPTURED  # the engine carries on


async def test_unprovable_outcome_goes_to_an_operator_who_resolves_it(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    # A fresh terminal (no earlier trace) and a cut before the result: nothing identifies it.
    # The terminal answers the status query, but its answer proves nothing: no second question.
    p = await bridge.pay(1097)
    assert p.state == PaymentState.UNKNOWN
    assert await recover_jobs(bridge) == 0
    tp = await bridge.terminal_side(p.id)
    assert tp.needs_operator and tp.detail is not None
    assert f"tillbridge payments resolve {p.id}" in tp.detail
    events = await bridge.events(p.id)
    assert events[-1].kind == "operator"
    assert authorizations(sim) == 1  # asked, never resent
    with pytest.raises(ValidationError):
        await bridge.rt.payments.resolve(p.id, outcome="maybe", reason="x", actor="op")
    done = await bridge.rt.payments.resolve(
        p.id, outcome="succeeded", reason="seen on the terminal journal", actor="operator:anna"
    )
    assert done.state == PaymentState.CAPTURED
    assert (await bridge.events(p.id))[-1].text.startswith("payment captured")
    async with bridge.db.read() as conn:
        actions = [
            r.action
            for r in await conn.execute(
                select(audit_log.c.action).where(audit_log.c.subject_id == p.id)
            )
        ]
    assert "payment.needs_operator" in actions and "payment.resolved" in actions
    # The bridge's last trace may be stale now: the next payment asks the terminal first.
    assert (await bridge.pay(1500)).state == PaymentState.CAPTURED


async def test_resolved_unknown_refund_ends_refunded(bridge: Bridge) -> None:
    p = await bridge.pay(1097, kind="refund")
    assert p.state == PaymentState.UNKNOWN
    done = await bridge.rt.payments.resolve(p.id, outcome="succeeded", reason="ok", actor="op")
    assert done.state == PaymentState.REFUNDED and done.refunded_minor == 1097


async def test_status_query_without_an_answer_is_asked_again_later(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    await bridge.pay(1000)
    # The link is cut after approval, and the terminal garbles its answer to Repeat Receipt.
    sim.configure(garbage=b"\x00garbage", garbage_command=(0x06, 0x20))
    p = await bridge.pay(1098)
    assert p.state == PaymentState.UNKNOWN
    assert await recover_jobs(bridge) == 1 and not (await bridge.terminal_side(p.id)).needs_operator
    sim.configure(garbage=None)
    await bridge.recover(p.id)  # the follow-up, run now instead of in 2 s
    assert (await bridge.payment(p.id)).state == PaymentState.CAPTURED
    assert sim.terminal.charges == 2 and authorizations(sim) == 2


async def test_recovery_refuses_to_guess_once_another_payment_ran(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    await bridge.pay(1000)
    sim.configure(garbage=b"\x00garbage", garbage_command=(0x06, 0x20))
    first = await bridge.create(1098)
    second = await bridge.create(1500)  # queued behind the first, before its follow-up query
    await bridge.run_jobs()
    assert (await bridge.payment(second)).state == PaymentState.CAPTURED
    assert (await bridge.payment(first)).state == PaymentState.UNKNOWN
    sim.configure(garbage=None)
    await bridge.recover(first)  # the follow-up comes after the second sale
    tp = await bridge.terminal_side(first)
    assert tp.needs_operator and "another payment ran" in (tp.detail or "")
    assert (await bridge.payment(first)).state == PaymentState.UNKNOWN


async def test_truncated_frame_from_the_terminal_is_unknown_then_recovered(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    zvt = bridge.rt.terminals.connector("lane1").zvt  # type: ignore[attr-defined]
    assert isinstance(zvt, ZvtTerminal)
    zvt._cfg = dataclasses.replace(zvt.config, t3=0.3)  # keep the test short: T3 is 5 s
    await bridge.pay(1000)
    # The first answer to the Authorization is an APDU that announces 16 bytes and sends one.
    sim.configure(garbage=b"\x80\x00\x10\x27", garbage_command=(0x06, 0x01))
    p = await bridge.pay(1234)
    assert p.state == PaymentState.DECLINED  # recovery: the terminal never booked it
    tp = await bridge.terminal_side(p.id)
    assert tp.recovery_attempts == 1 and authorizations(sim) == 2
    assert sim.terminal.charges == 1
