"""Fixtures: the ZVT simulator on real TCP sockets and a bridge runtime with terminal ``lane1``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.terminals import Bridge, SimFactory, tcp_terminal, terminals_runtime
from tillbridge.simulators.zvt import SimulatorHandle


@pytest.fixture
async def sim(start_sim: SimFactory) -> SimulatorHandle:
    return await start_sim()


@pytest.fixture
async def bridge(db_url: str, sim: SimulatorHandle) -> AsyncIterator[Bridge]:
    rt = terminals_runtime(db_url, {"lane1": tcp_terminal(sim)})
    yield Bridge(rt)
    await rt.close()
