"""Helpers of the terminal engine tests: a bridge runtime with ZVT terminals, jobs, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from tillbridge.config import Connector, MerchantConfig, Terminal
from tillbridge.domain.payments import Payment
from tillbridge.domain.states import OperationKind, PaymentState
from tillbridge.jobs import build_registry
from tillbridge.money import Money
from tillbridge.observability.redaction import Redactor
from tillbridge.queue import Worker
from tillbridge.runtime import Runtime
from tillbridge.services.payments import NewPayment
from tillbridge.settings import Settings
from tillbridge.simulators.zvt import SimulatorHandle
from tillbridge.store import payments_repo as repo
from tillbridge.store.db import Database
from tillbridge.terminals import store as ts
from tillbridge.terminals.events import StoredEvent
from tillbridge.terminals.tables import terminal_events

SimFactory = Callable[..., Awaitable[SimulatorHandle]]


def tcp_terminal(sim: SimulatorHandle, **extra: Any) -> Terminal:
    assert sim.port is not None
    return Terminal(protocol="zvt", host="127.0.0.1", port=sim.port, **extra)


def make_runtime(url: str, terminals: dict[str, Terminal]) -> Runtime:
    config = MerchantConfig(connectors={"fake": Connector(type="fake")}, terminals=terminals)
    from tillbridge.gateways.fake import FakeConnector

    return Runtime(
        settings=Settings(database_url=url, redact_values=[]),
        config=config,
        db=Database(url),
        redactor=Redactor([]),
        connectors={"fake": FakeConnector(name="fake")},
    )


@dataclass
class Clock:
    """The engine's clock, movable by tests (start timeouts) instead of sleeping."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


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
