"""In-memory wiring of the ZVT client to the simulator's PT session (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

from tillbridge.connectors.terminals.zvt.apdu import Apdu
from tillbridge.connectors.terminals.zvt.link import MemoryLink, ZvtLink, memory_link_pair
from tillbridge.simulators.zvt import PtSession, SimTerminal, SimulatorKnobs


class RecordingLink:
    """Wraps the client's end and writes what it sends into a shared log."""

    def __init__(self, inner: MemoryLink, log: list[str]) -> None:
        self.inner = inner
        self.log = log

    async def send_apdu(self, apdu: Apdu) -> None:
        self.log.append(f"send {apdu.cls:02X}{apdu.ins:02X}")
        await self.inner.send_apdu(apdu)

    async def recv_apdu(self, timeout: float | None) -> Apdu:
        apdu = await self.inner.recv_apdu(timeout)
        self.log.append(f"recv {apdu.cls:02X}{apdu.ins:02X}")
        return apdu

    async def close(self) -> None:
        await self.inner.close()


class MemoryPT:
    """A simulated PT reachable through in-memory links; one session per ``connect()``."""

    def __init__(self, **knobs: Any) -> None:
        self.terminal = SimTerminal(SimulatorKnobs(**knobs))
        self.log: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> ZvtLink:
        client, pt = memory_link_pair()
        self.tasks.append(asyncio.create_task(PtSession(self.terminal, pt).run()))
        return RecordingLink(client, self.log)

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
