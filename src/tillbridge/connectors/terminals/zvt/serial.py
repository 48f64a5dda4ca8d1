"""ZVT over a serial line: DLE/STX framing, CRC, ACK/NAK, timers T1 and T2, two repeats.

Every frame is answered at once with a bare ACK (good framing and CRC) or NAK. A sender waits
up to T2 for that byte and repeats the frame after a NAK or silence, at most twice; after the
third failure the link reports a transmission error. A receiver that sees a gap longer than T1
inside a frame drops the frame and answers NAK.

A background task reads the line, answers frames, and queues APDUs for :meth:`recv_apdu`, so
acknowledgement bytes are never left waiting on the application. Construct a
:class:`SerialLink` inside a running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

from tillbridge.connectors.terminals.zvt.apdu import Apdu
from tillbridge.connectors.terminals.zvt.serial_frame import (
    ACK_BYTE,
    NAK_BYTE,
    EventKind,
    FrameDecoder,
    encode_frame,
)
from tillbridge.errors import AckMissing, FrameRejected, LinkClosed, LinkTimeout, NotSent

T1: Final = 0.2
T2: Final = 5.0
MAX_REPEATS: Final = 2
DEFAULT_BAUDRATE: Final = 9600


@dataclass
class SerialStats:
    """Counters for tests and diagnostics."""

    frames_sent: int = 0
    repeats: int = 0
    acks_received: int = 0
    naks_received: int = 0
    naks_sent: int = 0
    bad_frames: int = 0


class SerialLink:
    """A :class:`~.link.ZvtLink` over an asyncio byte stream pair (a serial port, a PTY).

    ``t1``/``t2``/``max_repeats`` default to the spec's values. Subclasses may override
    :meth:`_frame_bytes` and :meth:`_accept_frame` (simulators inject faults there).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        t1: float = T1,
        t2: float = T2,
        max_repeats: int = MAX_REPEATS,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._t1 = t1
        self._t2 = t2
        self._max_repeats = max_repeats
        self._decoder = FrameDecoder()
        self._inbox: asyncio.Queue[Apdu | None] = asyncio.Queue()
        self._answers: asyncio.Queue[EventKind | None] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._writer_closed = False
        self._close_reason = "link closed"
        self.stats = SerialStats()
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        device: str,
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        stopbits: int = 2,
        t1: float = T1,
        t2: float = T2,
    ) -> SerialLink:
        """Open a serial device (8 data bits, no parity, 2 stop bits by default).

        Raises :class:`NotSent` if the device cannot be opened.
        """
        import serialx  # local: the TCP-only deployments never load the serial stack

        try:
            reader, writer = await serialx.open_serial_connection(
                device,
                baudrate=baudrate,
                stopbits=serialx.StopBits.TWO if stopbits == 2 else serialx.StopBits.ONE,
            )
        except (OSError, serialx.SerialException) as exc:
            raise NotSent(f"cannot open {device}: {exc}", code="zvt_serial_open_failed") from exc
        return cls(reader, writer, t1=t1, t2=t2)

    # hooks --------------------------------------------------------------------------------------

    def _frame_bytes(self, payload: bytes, attempt: int) -> bytes:
        """The bytes to put on the line for ``payload`` on this attempt (0 = first try)."""
        return encode_frame(payload)

    def _accept_frame(self, apdu: Apdu) -> bool:
        """Whether to ACK (True) or NAK (False) a frame that arrived intact."""
        return True

    # sending ------------------------------------------------------------------------------------

    async def send_apdu(self, apdu: Apdu) -> None:
        payload = apdu.encode()
        async with self._send_lock:
            naks = 0
            attempts = 1 + self._max_repeats
            for attempt in range(attempts):
                if self._closed:
                    raise LinkClosed(self._close_reason)
                while not self._answers.empty():  # stale ACK/NAK bytes belong to no one now
                    self._answers.get_nowait()
                if attempt:
                    self.stats.repeats += 1
                await self._write(self._frame_bytes(payload, attempt))
                self.stats.frames_sent += 1
                try:
                    async with asyncio.timeout(self._t2):
                        answer = await self._answers.get()
                except TimeoutError:
                    continue
                if answer is EventKind.ACK:
                    return
                if answer is None:
                    raise LinkClosed(self._close_reason)
                naks += 1
        if naks == attempts:
            raise FrameRejected(f"terminal refused the frame {attempts} times (NAK)")
        raise AckMissing(
            f"no ACK from the terminal after {attempts} attempts{self._garbage_hint()}"
        )

    def _garbage_hint(self) -> str:
        garbage = self._decoder.garbage
        return f" ({garbage} stray bytes seen: not ZVT serial framing?)" if garbage else ""

    async def _write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            self._mark_closed(f"write failed: {exc}")
            raise LinkClosed(self._close_reason) from exc

    # receiving ----------------------------------------------------------------------------------

    async def recv_apdu(self, timeout: float | None) -> Apdu:  # noqa: ASYNC109 - protocol timer
        if self._closed and self._inbox.empty():
            raise LinkClosed(self._close_reason)
        try:
            async with asyncio.timeout(timeout):
                item = await self._inbox.get()
        except TimeoutError:
            raise LinkTimeout(
                f"nothing received within {timeout} s{self._garbage_hint()}"
            ) from None
        if item is None:
            self._inbox.put_nowait(None)  # keep reporting closure to later callers
            raise LinkClosed(self._close_reason)
        return item

    async def _read_loop(self) -> None:
        try:
            while True:
                timeout = self._t1 if self._decoder.in_frame else None
                try:
                    async with asyncio.timeout(timeout):
                        data = await self._reader.read(4096)
                except TimeoutError:
                    # T1 expired inside a frame: drop it and ask for a repeat.
                    self._decoder.reset()
                    await self._send_byte(NAK_BYTE)
                    continue
                if not data:
                    self._mark_closed("serial line closed")
                    return
                for ev in self._decoder.feed(data):
                    await self._handle(ev.kind, ev.apdu)
        except (OSError, LinkClosed) as exc:
            self._mark_closed(f"serial line failed: {exc}")
        except asyncio.CancelledError:
            self._mark_closed("link closed")
            raise
        except Exception as exc:  # the reader must never die without telling the link's users
            self._mark_closed(f"serial reader failed: {type(exc).__name__}: {exc}")

    async def _handle(self, kind: EventKind, apdu: Apdu | None) -> None:
        if kind in (EventKind.ACK, EventKind.NAK):
            if kind is EventKind.ACK:
                self.stats.acks_received += 1
            else:
                self.stats.naks_received += 1
            self._answers.put_nowait(kind)
        elif kind is EventKind.FRAME and apdu is not None and self._accept_frame(apdu):
            await self._send_byte(ACK_BYTE)
            self._inbox.put_nowait(apdu)
        else:
            if kind is EventKind.BAD_FRAME:
                self.stats.bad_frames += 1
            await self._send_byte(NAK_BYTE)

    async def _send_byte(self, b: int) -> None:
        if b == NAK_BYTE:
            self.stats.naks_sent += 1
        await self._write(bytes((b,)))

    def _mark_closed(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        self._inbox.put_nowait(None)
        self._answers.put_nowait(None)

    async def close(self) -> None:
        self._mark_closed("link closed")
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self._task
        if not self._writer_closed:
            self._writer_closed = True
            self._writer.close()
            with contextlib.suppress(OSError, RuntimeError, AttributeError):
                await self._writer.wait_closed()
