"""ZVT over TCP: bare APDUs on a stream socket (no DLE framing, no ACK/NAK bytes).

The ECR opens and closes the connection (default port 20007). Reads may deliver any fragment
of the stream, so every read goes through an :class:`~.apdu.ApduReader`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from tillbridge.connectors.terminals.zvt.apdu import Apdu, ApduReader
from tillbridge.errors import LinkClosed, LinkTimeout, NotSent, ProtocolError

DEFAULT_PORT: Final = 20007
_READ_SIZE: Final = 65536


class TcpLink:
    """A :class:`~.link.ZvtLink` over an asyncio stream pair (either side of the connection)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = ApduReader()
        self._closed = False

    @classmethod
    async def connect(
        cls, host: str, port: int = DEFAULT_PORT, *, connect_timeout: float = 5.0
    ) -> TcpLink:
        """Open a connection to a terminal. Raises :class:`NotSent` if it cannot: nothing was
        sent, so whatever the caller wanted to do may safely be tried again."""
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            raise NotSent(
                f"cannot connect to terminal {host}:{port}: {exc or type(exc).__name__}",
                code="zvt_connect_failed",
            ) from exc
        return cls(reader, writer)

    async def send_apdu(self, apdu: Apdu) -> None:
        await self.send_raw(apdu.encode())

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are. For simulators and diagnostics; flows use ``send_apdu``."""
        if self._closed:
            raise LinkClosed("link closed")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            raise LinkClosed(f"send failed: {exc}") from exc

    async def recv_apdu(self, timeout: float | None) -> Apdu:  # noqa: ASYNC109 - protocol timer
        if self._closed:
            raise LinkClosed("link closed")
        try:
            async with asyncio.timeout(timeout):
                while True:
                    apdu = self._parser.next()
                    if apdu is not None:
                        return apdu
                    try:
                        data = await self._reader.read(_READ_SIZE)
                    except OSError as exc:
                        raise LinkClosed(f"receive failed: {exc}") from exc
                    if not data:
                        left = self._parser.pending()
                        why = f" in the middle of an APDU ({left} bytes)" if left else ""
                        raise LinkClosed(f"terminal closed the connection{why}")
                    self._parser.feed(data)
        except TimeoutError:
            raise LinkTimeout(f"nothing received within {timeout} s") from None
        except ProtocolError:
            # The stream is out of sync; nothing after this point can be trusted.
            await self.close()
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(OSError, RuntimeError):
            await self._writer.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once (RST where possible). For simulators' fault injection."""
        self._closed = True
        transport = self._writer.transport
        transport.abort()
