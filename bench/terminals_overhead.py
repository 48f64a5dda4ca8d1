"""Benchmark: terminal engine overhead per payment, and 50 terminals on one bridge.

    .venv/bin/python bench/terminals_overhead.py [--payments 200] [--terminals 50]
        [--per-terminal 10] [--db-url URL]

Run by hand; never a timed test. Two parts, both against zero-delay ZVT simulators over real
TCP sockets (in this process and event loop, so the figures include the simulator's share):

1. **Overhead per payment.** The same purchase (connect, Authorization, four intermediate
   statuses, Status-Information, receipts, Completion) once bare (``ZvtTerminal.purchase``, no
   database) and once through the bridge: ``PaymentEngine.create`` (payment, operation,
   terminal row, job in one transaction) plus the engine's job handler (persist before send,
   the connector with its ``persist_result`` hook, events, outcome). Bare and bridge payments
   alternate, so machine noise hits both alike. Reported: p50/p99 of each and of the
   difference (the bridge's overhead). Targets: overhead p50 <= 5 ms, p99 <= 20 ms.
2. **Parallel terminals.** ``--terminals`` simulators, one bridge runtime, a real queue worker
   (concurrency = terminals + 8). ``--per-terminal`` payments are queued on every terminal,
   then the worker drains the queue. Reported: payments/s, and the proof that every payment
   stayed on its terminal (each simulator charged exactly its own payments, no terminal ever
   answered "busy": no two conversations on one terminal at once).

Default database: a fresh SQLite file (WAL). ``--db-url`` takes an empty PostgreSQL database
(tables are created from the metadata).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, select

from tillbridge.app.jobs import build_registry
from tillbridge.app.runtime import Runtime, build_runtime
from tillbridge.config import MerchantConfig, TerminalConfig
from tillbridge.connectors.terminals import store as ts
from tillbridge.connectors.terminals.zvt import ZvtTerminal
from tillbridge.connectors.terminals.zvt.connector import ZvtTerminalConfig
from tillbridge.connectors.terminals.zvt.requests import PurchaseRequest
from tillbridge.domain.states import Outcome, PaymentState
from tillbridge.money import Money
from tillbridge.observability.logging import configure_logging
from tillbridge.payments.engine import NewPayment
from tillbridge.queue import Worker
from tillbridge.settings import Settings
from tillbridge.simulators.zvt import SimulatorHandle, serve_tcp
from tillbridge.store.db import sync_url
from tillbridge.store.schema import all_tables
from tillbridge.store.tables import payments


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def runtime(url: str, sims: dict[str, SimulatorHandle]) -> Runtime:
    terminals: dict[str, TerminalConfig] = {
        name: ZvtTerminalConfig(host="127.0.0.1", port=s.port or 0) for name, s in sims.items()
    }
    settings = Settings(
        database_url=url, redact_values=[], log_level="warning", worker_concurrency=62
    )
    return build_runtime(settings, MerchantConfig(terminals=terminals))


async def execute(rt: Runtime, pid: str) -> None:
    """The payment's ``payment.execute`` job, run here (what a worker does)."""
    async with rt.db.read() as conn:
        tp = await ts.get_terminal_payment(conn, pid)
    await rt.payments.execute(pid, tp.operation_id, tp.terminal)


async def create(rt: Runtime, terminal: str, minor: int) -> str:
    async with rt.db.write() as conn:
        p = await rt.payments.create(
            conn, NewPayment(Money(minor, "EUR"), "bench", terminal, {}), actor="bench",
            idempotency_key=None,
        )  # fmt: skip
    return p.id


async def overhead(url: str, n: int) -> None:
    bare_sim = await serve_tcp("127.0.0.1", 0)
    bridge_sim = await serve_tcp("127.0.0.1", 0)
    rt = runtime(url, {"lane1": bridge_sim})
    bare = ZvtTerminal.tcp("127.0.0.1", bare_sim.port or 0)
    t_bare: list[float] = []
    t_bridge: list[float] = []
    try:
        for i in range(n + 20):
            minor = 1000 + i % 50  # never a fault amount (..51, ..52, ..97-..99)
            start = time.perf_counter()
            res = await bare.purchase(PurchaseRequest(Money(minor, "EUR"), f"b{i}"))
            mid = time.perf_counter()
            pid = await create(rt, "lane1", minor)
            await execute(rt, pid)
            end = time.perf_counter()
            if res.outcome is not Outcome.SUCCEEDED:
                raise SystemExit(f"bare payment {i}: {res.outcome} {res.detail}")
            if i >= 20:  # warm-up (registration, first probe, caches) excluded
                t_bare.append(mid - start)
                t_bridge.append(end - mid)
        async with rt.db.read() as conn:
            states = {r[0] for r in await conn.execute(select(payments.c.state))}
        assert states == {str(PaymentState.CAPTURED)}, states
    finally:
        await rt.close()
        await bare_sim.close()
        await bridge_sim.close()
    diff = [b - a for a, b in zip(t_bare, t_bridge, strict=True)]
    print(f"overhead per payment ({n} payments, after 20 warm-up):")
    for label, xs in (("bare ZVT exchange", t_bare), ("through the bridge", t_bridge)):
        print(f"  {label:<22} p50 {pct(xs, 0.5):6.2f} ms   p99 {pct(xs, 0.99):6.2f} ms")
    p50 = statistics.median(diff) * 1000
    print(f"  {'bridge overhead':<22} p50 {p50:6.2f} ms   p99 {pct(diff, 0.99):6.2f} ms"
          "   (targets: p50 <= 5 ms, p99 <= 20 ms)")  # fmt: skip


async def parallel(url: str, terminals: int, per_terminal: int) -> None:
    sims = {f"t{i:02d}": await serve_tcp("127.0.0.1", 0) for i in range(terminals)}
    rt = runtime(url, sims)
    configure_logging(log_level="warning", redactor=rt.redactor)
    expected: dict[str, list[str]] = {name: [] for name in sims}
    try:
        for name in sims:  # registration and first probe, outside the measurement
            await execute(rt, await create(rt, name, 1000))
        for k in range(per_terminal):
            for name in sims:
                expected[name].append(await create(rt, name, 1001 + k % 40))
        worker = Worker(rt.db, build_registry(rt), concurrency=terminals + 8,
                        poll_interval=0.005, max_poll_interval=0.05)  # fmt: skip
        start = time.perf_counter()
        await worker.run_until_idle()
        elapsed = time.perf_counter() - start
        async with rt.db.read() as conn:
            rows = (
                await conn.execute(select(payments.c.id, payments.c.connector, payments.c.state))
            ).all()
        by_id = {r.id: (r.connector, r.state) for r in rows}
    finally:
        await rt.close()
        for s in sims.values():
            await s.close()
    total = terminals * per_terminal
    captured = sum(1 for c, s in by_id.values() if s == str(PaymentState.CAPTURED))
    on_own = all(by_id[pid][0] == name for name, ids in expected.items() for pid in ids)
    charges_ok = all(s.terminal.charges == per_terminal + 1 for s in sims.values())
    busy = sum(s.terminal.busy_rejections for s in sims.values())
    print(f"{terminals} terminals x {per_terminal} payments = {total} payments:")
    print(f"  {total / elapsed:7.1f} payments/s ({elapsed:.2f} s), {captured - terminals} captured")
    print(f"  every payment on its own terminal: {on_own and charges_ok}; "
          f"busy answers from terminals: {busy}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--payments", type=int, default=200)
    ap.add_argument("--terminals", type=int, default=50)
    ap.add_argument("--per-terminal", type=int, default=10)
    ap.add_argument("--db-url", default=None, help="empty PostgreSQL database (default SQLite)")
    args = ap.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("overhead", "parallel"):
            url = args.db_url or f"sqlite:///{Path(tmp) / f'{part}.db'}"
            engine = create_engine(sync_url(url))
            all_tables().drop_all(engine)
            all_tables().create_all(engine)
            engine.dispose()
            print(f"database: {url.split('@')[-1]}")
            if part == "overhead":
                asyncio.run(overhead(url, args.payments))
            else:
                asyncio.run(parallel(url, args.terminals, args.per_terminal))


if __name__ == "__main__":
    main()
