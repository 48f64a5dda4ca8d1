"""Helpers of the terminal engine tests: a bridge runtime with ZVT terminals, jobs, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tillbridge import testing
from tillbridge.app.jobs import build_registry
from tillbridge.app.runtime import Runtime
from tillbridge.config import MerchantConfig, TerminalConfig
from tillbridge.connectors.gateways.fake import FakeConnectorConfig
from tillbridge.connectors.terminals import store as ts
from tillbridge.connectors.terminals.events import StoredEvent
from tillbridge.connectors.terminals.tables import terminal_events
from tillbridge.connectors.terminals.zvt.connector import ZvtTerminalConfig
from tillbridge.domain.payments import Payment
from tillbridge.domain.states import OperationKind, PaymentState
from tillbridge.money import Money
from tillbridge.payments.engine import NewPayment
from tillbridge.queue import Worker
from tillbridge.simulators.zvt import SimulatorHandle
from tillbridge.store import payments_repo as repo
from tillbridge.store.db import Database
from tillbridge.testing import FakeClock

SimFactory = Callable[..., Awaitable[SimulatorHandle]]


def tcp_terminal(sim: SimulatorHandle, **extra: Any) -> ZvtTerminalConfig:
    assert sim.port is not None
    return ZvtTerminalConfig(host="127.0.0.1", port=sim.port, **extra)


def terminals_runtime(
    url: str, terminals: Mapping[str, TerminalConfig], *, clock: FakeClock | None = None
) -> Runtime:
    """A runtime with the sandbox connector and ``terminals``."""
    config = MerchantConfig(connectors={"fake": FakeConnectorConfig()}, terminals=dict(terminals))
    return testing.make_runtime(url, config, clock=clock)


@dataclass
class Bridge:
    rt: Runtime

    @property
    def db(self) -> Database:
        return self.rt.db

    async def create(
        self, minor: int, *, terminal: str = "lane1", kind: str = "purchase", ref: str = "R1"
    ) -> str:
        async with self.db.write() as conn:
            p = await self.rt.payments.create(
                conn,
                NewPayment(Money(minor, "EUR"), ref, terminal, {}, kind=OperationKind(kind)),
                actor="test",
                idempotency_key=None,
            )
        return p.id

    def worker(self, **kw: Any) -> Worker:
        kw.setdefault("concurrency", 8)
        kw.setdefault("poll_interval", 0.01)
        kw.setdefault("max_poll_interval", 0.05)
        return Worker(self.db, build_registry(self.rt), **kw)

    async def run_jobs(self) -> None:
        await self.worker().run_until_idle()

    async def pay(self, minor: int, **kw: Any) -> Payment:
        pid = await self.create(minor, **kw)
        await self.run_jobs()
        return await self.payment(pid)

    async def payment(self, pid: str) -> Payment:
        async with self.db.read() as conn:
            return await repo.get_payment(conn, pid)

    async def execute(self, pid: str) -> None:
        """Run the payment's execute job now (as a redelivered job would)."""
        tp = await self.terminal_side(pid)
        await self.rt.payments.execute(pid, tp.operation_id, tp.terminal)

    async def recover(self, pid: str) -> None:
        """Run a follow-up recovery job now, instead of when it is due."""
        tp = await self.terminal_side(pid)
        await self.rt.payments.recovery.job(pid, tp.operation_id, tp.terminal)

    async def mark_sent(self, pid: str) -> None:
        """Commit the payment as sent, as the worker does just before it talks to the
        terminal (a test then plays the worker dying right there)."""
        tp = await self.terminal_side(pid)
        engine = self.rt.payments
        family = engine.family(engine.connector(tp.terminal))
        async with self.db.write() as conn:
            snap = await family.snapshot(conn, pid, tp.operation_id)
            await engine._mark_sending(conn, family, snap, self.rt.clock())

    async def terminal_side(self, pid: str) -> ts.TerminalPayment:
        async with self.db.read() as conn:
            return await ts.get_terminal_payment(conn, pid)

    async def events(self, pid: str) -> list[StoredEvent]:
        async with self.db.read() as conn:
            return await self.rt.terminals.events.since(conn, pid, 0, limit=10_000)

    async def all_event_rows(self) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(terminal_events).order_by(terminal_events.c.id))
            return [dict(r) for r in rows.mappings()]

    async def wait_state(self, pid: str, *states: PaymentState, timeout: float = 20) -> Payment:
        """Poll the database until the payment is in one of ``states`` (a condition, not a
        fixed sleep)."""
        async with asyncio.timeout(timeout):
            while True:
                p = await self.payment(pid)
                if p.state in states:
                    return p
                await asyncio.sleep(0.01)


async def wait_for(check: Callable[[], bool], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def authorizations(sim: SimulatorHandle) -> int:
    return sum(1 for c in sim.terminal.commands if c == "Authorization")
