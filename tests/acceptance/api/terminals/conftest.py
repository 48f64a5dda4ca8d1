"""Fixtures of the terminal API tests: a real runtime with terminal ``lane1`` (the ZVT
simulator over TCP) and API keys, driven in-process through ``httpx2.ASGITransport``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.terminal_api import TermApi, make_api
from tillbridge.simulators.zvt import SimulatorHandle, serve_tcp


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    handle = await serve_tcp("127.0.0.1", 0)
    yield handle
    await handle.close()


@pytest.fixture
async def api(db_url: str, sim: SimulatorHandle) -> AsyncIterator[TermApi]:
    async with make_api(db_url, sim) as api:
        yield api
