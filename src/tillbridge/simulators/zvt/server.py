"""Run the simulated PT over TCP or on a serial device (a real port or a PTY).

Entry points for the CLI (``tillbridge simulate zvt --tcp HOST:PORT | --serial DEVICE``)::

    handle = await serve_tcp("127.0.0.1", 20007, hold_card=True)
    handle = await serve_serial("/dev/pts/7", corrupt_crc_once=True)
    ...
    await handle.close()

Keyword arguments are :class:`~.knobs.SimulatorKnobs` fields. Pass ``terminal=`` to share one
simulated PT (its journal and counters) between servers or restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tillbridge.connectors.terminals.zvt.apdu import Apdu
from tillbridge.connectors.terminals.zvt.serial import DEFAULT_BAUDRATE, SerialLink
from tillbridge.connectors.terminals.zvt.tcp import TcpLink

from .knobs import SimulatorKnobs
from .session import PtSession
from .state import SimTerminal


class FaultySerialLink(SerialLink):
    """A serial link that can spoil its first outgoing CRC and refuse its first incoming
    frame, to exercise the peer's NAK handling and repeats."""

    def __init__(self, *args: Any, corrupt_crc_once: bool, nak_once: bool, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._corrupt = corrupt_crc_once
        self._nak = nak_once

    def _frame_bytes(self, payload: bytes, attempt: int) -> bytes:
        frame = super()._frame_bytes(payload, attempt)
        if self._corrupt:
            self._corrupt = False
            frame = frame[:-1] + bytes((frame[-1] ^ 0xFF,))
        return frame

    def _accept_frame(self, apdu: Apdu) -> bool:
        if self._nak:
            self._nak = False
            return False
        return True


@dataclass
class SimulatorHandle:
    """A running simulator. ``port`` is the bound TCP port (useful with port 0)."""

    terminal: SimTerminal
    host: str | None = None
    port: int | None = None
    device: str | None = None
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _links: list[TcpLink | SerialLink] = field(default_factory=list)

    @property
    def knobs(self) -> SimulatorKnobs:
        return self.terminal.knobs

    def configure(self, **knobs: Any) -> None:
        """Change knobs of the running simulator (applies to the next command)."""
        self.terminal.knobs = dataclasses.replace(self.terminal.knobs, **knobs)

    async def close(self) -> None:
        """Stop listening and end every session (their links are dropped first, so sessions
        end on their own; what still runs is cancelled)."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            if isinstance(link, TcpLink):
                link.abort()
            else:
                await link.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()


def _terminal(terminal: SimTerminal | None, knobs: dict[str, Any]) -> SimTerminal:
    if terminal is None:
        return SimTerminal(SimulatorKnobs(**knobs))
    if knobs:
        terminal.knobs = dataclasses.replace(terminal.knobs, **knobs)
    return terminal


async def serve_tcp(
    host: str = "127.0.0.1", port: int = 0, *, terminal: SimTerminal | None = None, **knobs: Any
) -> SimulatorHandle:
    """Listen for ECR connections on ``host:port`` (0 = any free port, see ``handle.port``).

    Every connection gets its own session on the same simulated PT; a connection that sends a
    command while another one's command runs is answered ``84 A0`` (busy).
    """
    handle = SimulatorHandle(_terminal(terminal, knobs), host=host)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handle._tasks.add(task)
        link = TcpLink(reader, writer)
        handle._links.append(link)
        try:
            await PtSession(handle.terminal, link, raw_write=link.send_raw).run()
        except asyncio.CancelledError:
            # Only close() cancels sessions; ending quietly keeps asyncio from logging the
            # cancellation as an error of the connection callback.
            return
        finally:
            handle._links.remove(link)
            if task is not None:
                handle._tasks.discard(task)

    server = await asyncio.start_server(on_connect, host, port)
    handle._server = server
    handle.port = server.sockets[0].getsockname()[1]
    return handle


async def serve_serial(
    device_path: str,
    *,
    terminal: SimTerminal | None = None,
    baudrate: int = DEFAULT_BAUDRATE,
    t2: float = 5.0,
    **knobs: Any,
) -> SimulatorHandle:
    """Play the PT on a serial device (e.g. one end of a ``socat`` PTY pair).

    A serial line has no connections: one session serves it until :meth:`close`.
    """
    import serialx  # local: only serial users need it

    handle = SimulatorHandle(_terminal(terminal, knobs), device=device_path)
    reader, writer = await serialx.open_serial_connection(
        device_path, baudrate=baudrate, stopbits=serialx.StopBits.TWO
    )
    k = handle.terminal.knobs
    link = FaultySerialLink(
        reader, writer, t2=t2, corrupt_crc_once=k.corrupt_crc_once, nak_once=k.nak_once
    )
    handle._links.append(link)
    handle.terminal.serial_stats.append(link.stats)

    async def raw_write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def serve() -> None:
        await PtSession(handle.terminal, link, raw_write=raw_write).run()

    task = asyncio.get_running_loop().create_task(serve())
    handle._tasks.add(task)
    return handle
