"""The bridge process is killed (SIGKILL) while the terminal holds the customer's card.

A real worker subprocess runs the payment against the simulator (in this test's event loop,
over TCP). The test waits until the terminal asks for the card and the payment is committed
``in_progress``, starts the replacement worker (it cannot take the job while the first holds
its lease), kills the first, waits until the terminal noticed the dropped link, lets the
customer insert the card (the terminal charges it but cannot report the result) and waits
until recovery settled the payment. Every wait is on a condition (simulator event, database
state), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.terminals import (
    Bridge,
    SimFactory,
    authorizations,
    tcp_terminal,
    terminals_runtime,
    wait_for,
)
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

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.tmp.glob("worker*.log")))


@pytest.fixture
async def workers(db_url: str, sim: SimulatorHandle, tmp_path: Path) -> AsyncIterator[Workers]:
    w = Workers(db_url, sim, tmp_path)
    yield w
    await w.stop()


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
    # The replacement boots now; it cannot take the job while the first one holds its lease.
    second = await workers.start()
    first.kill()  # SIGKILL: no finally blocks, no goodbye to the terminal
    assert await first.wait() == -9
    await wait_for(lambda: sim.terminal.orphaned_holds == 1)  # the terminal saw the link drop
    sim.terminal.release_card()  # the customer inserts the card anyway
    await wait_for(lambda: sim.terminal.charges == 2, timeout=30)

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
    sqlite_url: str, start_sim: SimFactory, tmp_path: Path
) -> None:
    """A terminal that reverses what it could not report: no money moved, the payment is
    declined by recovery, never sent again. (SQLite only: the engine-independent part is the
    same as above, and worker processes are the slow part of this suite.)"""
    sim = await start_sim()
    workers = Workers(sqlite_url, sim, tmp_path)
    bridge = Bridge(terminals_runtime(sqlite_url, {"lane1": tcp_terminal(sim)}))
    try:
        assert (await bridge.pay(1000)).state == PaymentState.CAPTURED
        sim.configure(hold_card=True, unacked_policy="reverse")
        pid = await bridge.create(2345)
        first = await workers.start()
        await asyncio.wait_for(sim.terminal.card_waiting.wait(), 60)
        await bridge.wait_state(pid, PaymentState.IN_PROGRESS)
        await workers.start()
        first.kill()
        await first.wait()
        await wait_for(lambda: sim.terminal.orphaned_holds == 1)
        sim.terminal.release_card()
        p = await bridge.wait_state(pid, PaymentState.CAPTURED, PaymentState.DECLINED, timeout=60)
        assert p.state == PaymentState.DECLINED, workers.logs()
        assert len(sim.terminal.booked_purchases) == 1 and authorizations(sim) == 2
    finally:
        await workers.stop()
        await bridge.rt.close()
