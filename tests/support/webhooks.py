"""A bridge under test for the webhook tests: real runtime, real database, real API app.

The API is driven in-process through ``httpx2.ASGITransport``; the job worker is the real
:class:`~tillbridge.queue.Worker` run with ``run_until_idle`` and a clock the test moves.
Counterparts are the shipped simulators (Xentral events and write-back API) and real local HTTP
receivers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.sql.schema import Table

from support.local_http import serve_asgi as serve_asgi  # re-exported for the webhook tests
from tillbridge import testing
from tillbridge.api import create_app
from tillbridge.app.jobs import build_registry
from tillbridge.app.runtime import Runtime
from tillbridge.config import MerchantConfig, Register, SecretRef, Store, Subscriber
from tillbridge.connectors.gateways.fake import FakeConnectorConfig
from tillbridge.erp.xentral.entry import XentralConfig
from tillbridge.inbound.failures import FailureWindow
from tillbridge.money import Money
from tillbridge.outbound import BreakerConfig, BreakerRegistry
from tillbridge.queue import Worker
from tillbridge.services import apikeys
from tillbridge.simulators.xentral import (
    XentralDelivery,
    XentralSimState,
    card_payment_body,
    deliveries,
    envelope,
)
from tillbridge.simulators.xentral import create_app as xentral_api
from tillbridge.store.db import Database
from tillbridge.testing import FakeClock

XENTRAL_KEY = "xentral-webhook-key-0001"  # 24 chars, like a key entered in Xentral's UI
XENTRAL_TOKEN = "xentral-api-token-0001"
ACCOUNT = "xpos"
XENTRAL_URL = "http://xentral.test"


def MovableClock() -> FakeClock:
    """Wall, queue and engine time that move only when told to.

    It starts ten minutes ahead of the real time: jobs stamped with the real time by code that
    does not take the clock are then due for a worker running on this clock.
    """
    return FakeClock(ahead=timedelta(minutes=10))


def make_config(
    *,
    subscribers: dict[str, Subscriber] | None = None,
    terminal_connector: bool = False,
    extra_registers: dict[str, Register] | None = None,
) -> MerchantConfig:
    registers = {"lane1": Register(store="shop", xentral_project="1")}
    registers.update(extra_registers or {})
    return MerchantConfig(
        stores={"shop": Store(name="Shop")},
        registers=registers,
        # The sandbox is configured on purpose: registers without a terminal fall back to it.
        connectors={"fake": FakeConnectorConfig()}
        | ({"lane-term": FakeConnectorConfig()} if terminal_connector else {}),
        erp={
            ACCOUNT: XentralConfig(
                url=XENTRAL_URL,  # type: ignore[arg-type]
                api_key=SecretRef(env="TB_TEST_XENTRAL_TOKEN"),
                webhook_secrets=[
                    SecretRef(env="TB_TEST_XENTRAL_KEY_OLD"),
                    SecretRef(env="TB_TEST_XENTRAL_KEY"),
                ],
            )
        },
        subscribers=subscribers or {},
    )


def set_secret_env(monkeypatch: Any) -> None:
    monkeypatch.setenv("TB_TEST_XENTRAL_TOKEN", XENTRAL_TOKEN)
    monkeypatch.setenv("TB_TEST_XENTRAL_KEY", XENTRAL_KEY)
    monkeypatch.setenv("TB_TEST_XENTRAL_KEY_OLD", "an-older-key-being-rotated-out")


@dataclass
class Bridge:
    runtime: Runtime
    app: FastAPI
    client: httpx2.AsyncClient
    clock: MovableClock
    admin_key: str
    reader_key: str
    #: The Xentral write-back simulator every outbound client talks to (in-process).
    xentral: XentralSimState

    @property
    def db(self) -> Database:
        return self.runtime.db

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.reader_key}"}

    def signed(self, payload: dict[str, Any] | bytes, **knobs: Any) -> list[XentralDelivery]:
        key = knobs.pop("key", XENTRAL_KEY)
        return deliveries(payload, now=int(self.clock.wall()), key=key, **knobs)

    async def post(
        self, delivery: XentralDelivery, account: str = ACCOUNT, **headers: str
    ) -> httpx2.Response:
        return await self.client.post(
            f"/webhooks/xentral/{account}",
            content=delivery.body,
            headers={**delivery.headers, **headers},
        )

    async def send_sale(self, amount: str = "12.34", **body: Any) -> httpx2.Response:
        payload = envelope(card_payment_body(Money.of(amount, "EUR"), **body))
        return await self.post(self.signed(payload)[0])

    async def work(self, db: Database | None = None) -> None:
        """Run the job worker until nothing is due (a fresh worker each time, like a restart)."""
        worker = Worker(
            db or self.db, build_registry(self.runtime), clock=self.clock, scheduler=False
        )
        await worker.run_until_idle()

    async def count(self, table: Table) -> int:
        async with self.db.read() as conn:
            stmt = select(func.count()).select_from(table)
            return int((await conn.execute(stmt)).scalar_one())


@contextlib.asynccontextmanager
async def open_bridge(
    url: str, config: MerchantConfig, *, connectors: dict[str, Any] | None = None
) -> AsyncIterator[Bridge]:
    clock = MovableClock()
    runtime = testing.make_runtime(
        url, config, connectors=connectors, clock=clock,
        redact_values=[XENTRAL_KEY, XENTRAL_TOKEN],
    )  # fmt: skip
    intake = runtime.integrations.intake
    intake.wall_clock = clock.wall
    intake.failures = FailureWindow(threshold=3, window_s=60, clock=clock.monotonic)
    hub = runtime.integrations.outbound
    hub.clock = clock.monotonic
    hub.breakers = BreakerRegistry(BreakerConfig(failure_threshold=3), clock=clock.monotonic)
    hub.sleep = no_sleep
    sim = XentralSimState(token=XENTRAL_TOKEN)
    hub.transports[f"xentral:{ACCOUNT}"] = httpx2.ASGITransport(app=xentral_api(sim))
    app = create_app(runtime)
    async with runtime.db.write() as conn:
        _, admin_key = await apikeys.create_key(conn, "ops", ["admin"])
        _, reader_key = await apikeys.create_key(conn, "pos", ["payments:read"])
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False, client=("10.1.2.3", 4))
    async with httpx2.AsyncClient(transport=transport, base_url="http://bridge.test") as client:
        yield Bridge(runtime, app, client, clock, admin_key, reader_key, sim)
    await runtime.close()


async def no_sleep(_seconds: float) -> None:
    """In-process retry delays of outbound clients: tests move clocks instead of waiting."""


@pytest.fixture
async def bridge(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bridge]:
    """A bridge with one Xentral account (``xpos``), register ``lane1`` = project 1."""
    set_secret_env(monkeypatch)
    async with open_bridge(db_url, make_config()) as b:
        yield b
