"""Helpers of the terminal API tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
from fastapi import FastAPI

from tillbridge import testing
from tillbridge.api import create_app
from tillbridge.app.jobs import build_registry
from tillbridge.app.runtime import Runtime
from tillbridge.config import MerchantConfig
from tillbridge.connectors.terminals.zvt.connector import ZvtTerminalConfig
from tillbridge.domain.states import PaymentState
from tillbridge.queue import Worker
from tillbridge.services import apikeys
from tillbridge.simulators.zvt import SimulatorHandle
from tillbridge.store.db import Database

BODY: dict[str, Any] = {"amount": 1234, "currency": "EUR", "reference": "BON-1"}


def lane1_runtime(url: str, sim: SimulatorHandle) -> Runtime:
    """A runtime with one ZVT terminal, ``lane1``, on the simulator behind ``sim``."""
    assert sim.port is not None
    config = MerchantConfig(terminals={"lane1": ZvtTerminalConfig(host="127.0.0.1", port=sim.port)})
    return testing.make_runtime(url, config)


@dataclass
class TermApi:
    client: httpx2.AsyncClient
    runtime: Runtime
    app: FastAPI
    keys: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str = "writer", idem: str | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.keys[who]}"}
        if idem is not None:
            h["Idempotency-Key"] = idem
        return h

    async def start(
        self, body: dict[str, Any] | None = None, idem: str = "k-1", terminal: str = "lane1"
    ) -> httpx2.Response:
        return await self.client.post(
            f"/v1/terminals/{terminal}/payments",
            json=BODY if body is None else body,
            headers=self.headers(idem=idem),
        )

    async def run_jobs(self) -> None:
        await Worker(
            self.runtime.db, build_registry(self.runtime), poll_interval=0.01
        ).run_until_idle()

    async def get(self, path: str, who: str = "reader", **kw: Any) -> httpx2.Response:
        return await self.client.get(
            path, headers={**self.headers(who), **kw.pop("headers", {})}, **kw
        )

    async def wait_state(self, pid: str, *states: str, timeout: float = 20) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                body: dict[str, Any] = (await self.get(f"/v1/payments/{pid}")).json()
                if body["state"] in states:
                    return body
                await asyncio.sleep(0.01)


async def make_keys(db: Database) -> dict[str, str]:
    wanted = {
        "writer": ["payments:read", "payments:write"],
        "reader": ["payments:read"],
    }
    tokens: dict[str, str] = {}
    async with db.write() as conn:
        for name, scopes in wanted.items():
            _, tokens[name] = await apikeys.create_key(conn, name, scopes)
    return tokens


@asynccontextmanager
async def make_api(url: str, sim: SimulatorHandle) -> AsyncIterator[TermApi]:
    rt = lane1_runtime(url, sim)
    app = create_app(rt)
    keys = await make_keys(rt.db)
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://bridge.test") as client:
        yield TermApi(client, rt, app, keys)
    await rt.close()


def parse_sse(text: str) -> list[dict[str, Any]]:
    """``[{"id", "event", "data"}]`` of an event-stream body (comments skipped)."""
    out: list[dict[str, Any]] = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        if "event" in fields:
            fields["data"] = json.loads(fields.get("data") or "{}")
            out.append(fields)
    return out


FINAL = {str(PaymentState.CAPTURED), str(PaymentState.DECLINED), str(PaymentState.FAILED)}
