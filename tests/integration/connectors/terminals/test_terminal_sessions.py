"""One terminal, one payment at a time: queueing, the start timeout, abort and input.

The simulator holds the card (``hold_card``) so a payment is provably running while the test
acts; tests synchronise on the simulator's ``card_waiting`` event and on database state.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from support.terminals import (
    Bridge,
    SimFactory,
    authorizations,
    tcp_terminal,
    terminals_runtime,
    wait_for,
)
from tillbridge.connectors.terminals.sandbox import SandboxTerminal, SandboxTerminalConfig
from tillbridge.connectors.terminals.zvt import ZvtTerminal
from tillbridge.connectors.terminals.zvt.connector import ZvtTerminalConfig
from tillbridge.domain.states import PaymentState
from tillbridge.errors import DomainError, NotSupported
from tillbridge.simulators.zvt import SimulatorHandle, serve_serial
from tillbridge.testing import FakeClock

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running_worker(bridge: Bridge) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.worker().run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def card_inserted(sim: SimulatorHandle) -> None:
    """Wait until the terminal asks for the card, then insert it."""
    await asyncio.wait_for(sim.terminal.card_waiting.wait(), 20)
    sim.terminal.release_card()
    await wait_for(lambda: not sim.terminal.card_waiting.is_set())


async def test_two_payments_for_one_terminal_run_one_after_the_other(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    sim.configure(hold_card=True)
    first = await bridge.create(1000, ref="A")
    second = await bridge.create(2000, ref="B")
    async with running_worker(bridge):
        await asyncio.wait_for(sim.terminal.card_waiting.wait(), 20)
        # The first payment is at the terminal; the second waits in line, nothing sent.
        assert (await bridge.payment(first)).state == PaymentState.IN_PROGRESS
        assert (await bridge.payment(second)).state == PaymentState.CREATED
        status = await bridge.rt.terminals.status("lane1")
        assert status["busy"] and status["current_payment_id"] == first
        assert status["queued_payments"] == 1
        await card_inserted(sim)
        await bridge.wait_state(first, PaymentState.CAPTURED)
        await card_inserted(sim)
        await bridge.wait_state(second, PaymentState.CAPTURED)
    assert sim.terminal.busy_rejections == 0  # never two conversations with the terminal at once
    assert authorizations(sim) == 2 and sim.terminal.charges == 2
    first_events = await bridge.events(first)
    second_events = await bridge.events(second)
    started = next(e.id for e in second_events if e.text == "payment in_progress")
    assert started > max(e.id for e in first_events)  # not interleaved


async def test_a_payment_that_cannot_start_in_time_is_canceled_with_the_reason(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    clock = bridge.rt.clock
    assert isinstance(clock, FakeClock)
    sim.configure(hold_card=True)
    first = await bridge.create(1000)
    second = await bridge.create(2000)
    async with running_worker(bridge):
        await asyncio.wait_for(sim.terminal.card_waiting.wait(), 20)
        clock.advance(
            (bridge.rt.terminals.family.start_timeout + timedelta(seconds=1)).total_seconds()
        )
        await card_inserted(sim)
        await bridge.wait_state(first, PaymentState.CAPTURED)
        p = await bridge.wait_state(second, PaymentState.CANCELED)
    assert p.failure_reason is not None and "busy" in p.failure_reason
    assert "nothing was sent" in p.failure_reason
    assert authorizations(sim) == 1


async def test_cancel_aborts_a_running_payment_on_the_terminal(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    sim.configure(hold_card=True)
    pid = await bridge.create(1000)
    async with running_worker(bridge):
        await asyncio.wait_for(sim.terminal.card_waiting.wait(), 20)
        p = await bridge.rt.payments.cancel(pid, actor="api_key:pos")
        assert p.state == PaymentState.IN_PROGRESS  # only the terminal can stop it
        done = await bridge.wait_state(pid, PaymentState.DECLINED)
    assert done.failure_reason is not None and "abort" in done.failure_reason
    assert sim.terminal.charges == 0
    texts = [e.text for e in await bridge.events(pid)]
    assert any(t.startswith("abort requested by api_key:pos") for t in texts)


async def test_cancel_of_a_queued_payment_never_reaches_the_terminal(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    pid = await bridge.create(1000)
    p = await bridge.rt.payments.cancel(pid, actor="test")
    assert p.state == PaymentState.CANCELED
    await bridge.run_jobs()
    assert (await bridge.payment(pid)).state == PaymentState.CANCELED
    assert authorizations(sim) == 0


async def test_terminal_that_cannot_abort_says_cancel_on_the_terminal(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    zvt = bridge.rt.terminals.connector("lane1").zvt  # type: ignore[attr-defined]
    assert isinstance(zvt, ZvtTerminal)
    zvt._cfg = dataclasses.replace(zvt.config, can_abort=False)  # e.g. some PAX models
    sim.configure(hold_card=True)
    pid = await bridge.create(1000)
    async with running_worker(bridge):
        await asyncio.wait_for(sim.terminal.card_waiting.wait(), 20)
        with pytest.raises(DomainError) as err:
            await bridge.rt.payments.cancel(pid, actor="test")
        assert err.value.code == "cancel_on_terminal"
        assert "cancel it on the terminal" in err.value.message
        await card_inserted(sim)
        await bridge.wait_state(pid, PaymentState.CAPTURED)


async def test_input_a_terminal_cannot_take_is_refused_and_abort_is_delivered(
    bridge: Bridge, sim: SimulatorHandle
) -> None:
    idle = await bridge.rt.terminals.submit_input("lane1", "abort", None, actor="op")
    assert idle["recorded"] and not idle["delivered"] and idle["payment_id"] is None
    sim.configure(hold_card=True)
    pid = await bridge.create(1000)
    async with running_worker(bridge):
        await asyncio.wait_for(sim.terminal.card_waiting.wait(), 20)
        with pytest.raises(NotSupported) as refused:
            await bridge.rt.terminals.submit_input("lane1", "text", "hi", actor="op")
        assert "on the terminal itself" in refused.value.message
        assert refused.value.details["supported"] == ["abort"]
        abort = await bridge.rt.terminals.submit_input("lane1", "abort", None, actor="op")
        assert abort["delivered"] and abort["supported"] == ["abort"]
        await bridge.wait_state(pid, PaymentState.DECLINED)
    kinds = [e.kind for e in await bridge.events(pid)]
    assert kinds.count("input") == 1  # the refused input was not recorded as delivered


async def test_zvt_over_serial(db_url: str, pty_pair: tuple[str, str]) -> None:
    pt_side, ecr_side = pty_pair
    sim = await serve_serial(pt_side)
    rt = terminals_runtime(db_url, {"till": ZvtTerminalConfig(serial=ecr_side)})
    try:
        bridge = Bridge(rt)
        p = await bridge.pay(1234, terminal="till")
        assert p.state == PaymentState.CAPTURED
        assert (await bridge.terminal_side(p.id)).masked_pan == "672559******1234"
        status = await rt.terminals.status("till")
        assert status["link"] == f"serial:{ecr_side}" and status["online"] is True
    finally:
        await rt.close()
        await sim.close()


async def test_serial_frames_with_a_bad_crc_are_refused_and_repeated(
    db_url: str, pty_pair: tuple[str, str]
) -> None:
    pt_side, ecr_side = pty_pair
    sim = await serve_serial(pt_side, corrupt_crc_once=True, nak_once=True)
    rt = terminals_runtime(db_url, {"till": ZvtTerminalConfig(serial=ecr_side)})
    try:
        p = await Bridge(rt).pay(1234, terminal="till")
        assert p.state == PaymentState.CAPTURED  # NAK, repeat, carry on: no crash, no loss
        [stats] = sim.terminal.serial_stats
        assert stats.naks_sent == 1 and stats.naks_received == 1
    finally:
        await rt.close()
        await sim.close()


async def test_fake_terminal_runs_in_process(db_url: str) -> None:
    rt = terminals_runtime(db_url, {"demo": SandboxTerminalConfig()})
    try:
        bridge = Bridge(rt)
        assert (await bridge.pay(1234, terminal="demo")).state == PaymentState.CAPTURED
        assert (await bridge.pay(1098, terminal="demo")).state == PaymentState.CAPTURED
        sandbox = rt.terminals.connector("demo")
        assert isinstance(sandbox, SandboxTerminal) and sandbox.charges == 2
    finally:
        await rt.close()


async def test_two_terminals_work_in_parallel(db_url: str, start_sim: SimFactory) -> None:
    sims = [await start_sim(hold_card=True) for _ in range(2)]
    rt = terminals_runtime(db_url, {f"t{i}": tcp_terminal(s) for i, s in enumerate(sims)})
    bridge = Bridge(rt)
    try:
        ids = [await bridge.create(1000 + i, terminal=f"t{i}") for i in range(2)]
        async with running_worker(bridge):
            # Both terminals hold a card at the same time: one lane never blocks another.
            for s in sims:
                await asyncio.wait_for(s.terminal.card_waiting.wait(), 20)
            for s in sims:
                s.terminal.release_card()
            for pid in ids:
                await bridge.wait_state(pid, PaymentState.CAPTURED)
        assert [s.terminal.charges for s in sims] == [1, 1]
    finally:
        await rt.close()
