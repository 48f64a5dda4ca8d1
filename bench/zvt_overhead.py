"""Client overhead per ZVT payment against a zero-delay simulator (run by hand, not timed in CI).

    .venv/bin/python bench/zvt_overhead.py [payments] [--memory]

Each payment is a full flow: connect, Authorization, four intermediate statuses, the
Status-Information with the persist hook, two receipts as text blocks, Completion, close.
The simulator answers at once, so the figures are protocol and code overhead on both sides
(the simulator shares the process and the event loop), not terminal time. ``--memory``
replaces the TCP socket with in-memory links to separate socket cost from codec/flow cost.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from tillbridge.connectors.terminals.zvt import ZvtTerminal
from tillbridge.connectors.terminals.zvt.link import ZvtLink, memory_link_pair
from tillbridge.connectors.terminals.zvt.requests import PurchaseRequest
from tillbridge.domain.states import Outcome
from tillbridge.money import Money
from tillbridge.payments.contract import ConnectorResult
from tillbridge.simulators.zvt import PtSession, SimTerminal, SimulatorKnobs, serve_tcp


async def _persist(result: ConnectorResult) -> None:
    return None


async def run(payments: int, memory: bool) -> list[float]:
    handle = None
    if memory:
        terminal_state = SimTerminal(SimulatorKnobs())
        tasks: list[asyncio.Task[None]] = []

        async def connect() -> ZvtLink:
            ecr, pt = memory_link_pair()
            tasks.append(asyncio.create_task(PtSession(terminal_state, pt).run()))
            return ecr

        terminal = ZvtTerminal(connect, persist_result=_persist)
    else:
        handle = await serve_tcp("127.0.0.1", 0)
        assert handle.port is not None
        terminal = ZvtTerminal.tcp("127.0.0.1", handle.port, persist_result=_persist)
    samples: list[float] = []
    try:
        for i in range(payments + 10):
            start = time.perf_counter()
            result = await terminal.purchase(PurchaseRequest(Money(1000 + i % 50, "EUR"), f"b{i}"))
            elapsed = time.perf_counter() - start
            if result.outcome is not Outcome.SUCCEEDED:
                raise SystemExit(f"payment {i} ended {result.outcome}: {result.detail}")
            if i >= 10:  # warm-up excluded
                samples.append(elapsed)
    finally:
        if handle is not None:
            await handle.close()
    return samples


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    payments = int(args[0]) if args else 300
    memory = "--memory" in sys.argv
    samples = sorted(asyncio.run(run(payments, memory)))
    p50 = statistics.median(samples) * 1000
    p99 = samples[max(0, int(len(samples) * 0.99) - 1)] * 1000
    link = "in-memory links" if memory else "TCP on 127.0.0.1"
    print(f"ZVT purchase, full flow, {link}, {len(samples)} payments")
    print(f"  p50 {p50:.2f} ms   p99 {p99:.2f} ms   max {samples[-1] * 1000:.2f} ms")
    print(f"  throughput {len(samples) / sum(samples):.0f} payments/s (sequential)")


if __name__ == "__main__":
    main()
