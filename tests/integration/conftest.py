"""Fixtures shared by the ZVT and terminal-engine tests: simulators on real sockets and PTYs."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from tillbridge.simulators.zvt import SimulatorHandle, serve_tcp


@pytest.fixture
async def start_sim() -> AsyncIterator[Callable[..., Awaitable[SimulatorHandle]]]:
    """Start ZVT simulators on 127.0.0.1 with any free port; all are closed after the test."""
    handles: list[SimulatorHandle] = []

    async def start(**knobs: Any) -> SimulatorHandle:
        handle = await serve_tcp("127.0.0.1", 0, **knobs)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.close()


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
