"""The bridge process is killed (SIGKILL) while the terminal holds the customer's card.

A real worker subprocess runs the payment against the simulator (in this test's event loop,
over TCP). The test waits until the terminal asks for the card and the payment is committed
``in_progress``, kills the worker, lets the customer insert the card (the terminal charges it
but cannot report the result), starts a new worker and waits until recovery settled the
payment. Every wait is on a condition (simulator event, database state), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from term_support import Bridge, authorizations, make_runtime, tcp_terminal, wait_for

from tillbridge.domain.states import PaymentState
from tillbridge.simulators.zvt import SimulatorHandle

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("bridge_worker.py")


class Workers:
    def __init__(self, url: str, sim: SimulatorHandle, tmp: Path) -> None:
        self.url, self.sim, self.tmp = url, sim, tmp
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> asyncio.subprocess.Process:
        log = (self.tmp / f"worker{len(self.procs)}.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SCRIPT), self.url, "127.0.0.1", str(self.sim.port),
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.tmp.glob("worker*.log")))


@pytest.fixture
async def workers(db_url: str, sim: SimulatorHandle, tmp_path: Path) -> AsyncIterator[Workers]:
    w = Workers(db_url, sim, tmp_path)
    yield w
    for proc in w.procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_kill_9_mid_payment_is_recovered_and_charged_once(
    bridge: Bridge, sim: SimulatorHandle, workers: Workers
) -> None:
    # An earlier payment: the bridge knows the terminal's last trace number.
    assert (await bridge.pay(1000)).state == PaymentState.CAPTURED
    sim.configure(hold_card=True)
    pid = await bridge.create(2345)

    first = await workers.start()
    await asyncio.wait_for(sim.terminal.card_waiting.wait(), 60)
    await bridge.wait_state(pid, PaymentState.IN_PROGRESS)
    first.kill()  # SIGKILL: no finally blocks, no goodbye to the terminal
    assert await first.wait() == -9

    sim.terminal.release_card()  # the customer inserts the card anyway
    await wait_for(lambda: sim.terminal.charges == 2 and not sim.terminal.in_use, timeout=30)
    assert (await bridge.payment(pid)).state == PaymentState.IN_PROGRESS

    second = await workers.start()
    try:
        p = await bridge.wait_state(pid, PaymentState.CAPTURED, PaymentState.DECLINED, timeout=60)
    except TimeoutError:
        pytest.fail(f"not recovered\n{workers.logs()}")
    assert p.state == PaymentState.CAPTURED, workers.logs()
    assert sim.terminal.charges == 2  # the warm-up and this one: charged exactly once
    assert authorizations(sim) == 2  # recovery asked; it never sent the sale again
    texts = [e.text for e in await bridge.events(pid)]
    assert any("the bridge stopped" in t for t in texts)
    second.terminate()
    assert await second.wait() == 0, workers.logs()


async def test_kill_9_before_the_terminal_booked_is_declined_not_resent(
    db_url: str, sim: SimulatorHandle, workers: Workers
) -> None:
    bridge = Bridge(make_runtime(db_url, {"lane1": tcp_terminal(sim)}))
    try:
        assert (await bridge.pay(1000)).state == PaymentState.CAPTURED
        sim.configure(hold_card=True, unacked_policy="reverse")
        pid = await bridge.create(2345)
        first = await workers.start()
        await asyncio.wait_for(sim.terminal.card_waiting.wait(), 60)
        await bridge.wait_state(pid, PaymentState.IN_PROGRESS)
        first.kill()
        await first.wait()
        sim.terminal.release_card()
        # This terminal reverses what it could not report: no money moved in the end.
        await wait_for(lambda: not sim.terminal.in_use and len(sim.terminal.journal) == 2)
        second = await workers.start()
        p = await bridge.wait_state(pid, PaymentState.CAPTURED, PaymentState.DECLINED, timeout=60)
        assert p.state == PaymentState.DECLINED, workers.logs()
        assert len(sim.terminal.booked_purchases) == 1 and authorizations(sim) == 2
        second.terminate()
        await second.wait()
    finally:
        await bridge.rt.close()
