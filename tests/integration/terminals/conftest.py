"""Fixtures: the ZVT simulator on real TCP sockets and a bridge runtime with terminal ``lane1``."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from term_support import Bridge, SimFactory, make_runtime, tcp_terminal

from tillbridge.simulators.zvt import SimulatorHandle, serve_tcp


@pytest.fixture
async def start_sim() -> AsyncIterator[SimFactory]:
    handles: list[SimulatorHandle] = []

    async def start(**knobs: Any) -> SimulatorHandle:
        handle = await serve_tcp("127.0.0.1", 0, **knobs)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.close()


@pytest.fixture
async def sim(start_sim: SimFactory) -> SimulatorHandle:
    return await start_sim()


@pytest.fixture
async def bridge(db_url: str, sim: SimulatorHandle) -> AsyncIterator[Bridge]:
    rt = make_runtime(db_url, {"lane1": tcp_terminal(sim)})
    yield Bridge(rt)
    await rt.close()


@pytest.fixture
async def pty_pair() -> AsyncIterator[tuple[str, str]]:
    """Two connected PTY devices (``socat -d -d pty,raw,echo=0 pty,raw,echo=0``)."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.skip("socat is not installed: serial tests need a PTY pair")
    proc = await asyncio.create_subprocess_exec(
        socat, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0", stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    paths: list[str] = []
    with anyio.fail_after(10):
        while len(paths) < 2:
            line = (await proc.stderr.readline()).decode()
            if not line:
                pytest.fail("socat exited before reporting two PTYs")
            match = re.search(r"PTY is (\S+)", line)
            if match:
                paths.append(match.group(1))
    try:
        yield paths[0], paths[1]
    finally:
        proc.terminate()
        await proc.wait()
