"""The ZVT link interface and an in-memory pair for tests.

A link moves whole APDUs between the ECR and the PT. TCP and serial implementations live in
:mod:`.tcp` and :mod:`.serial`; both sides of a conversation (client and simulator) use the same
classes. Link errors (``LinkClosed``, ``LinkTimeout``, ``FrameRejected``, ``AckMissing``, all in
:mod:`tillbridge.errors`) say *what* failed; whether that makes a transaction ``not_sent`` or
``unknown`` is decided by the flow, which knows whether the command had already gone out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from tillbridge.connectors.terminals.zvt.apdu import Apdu
from tillbridge.errors import LinkClosed, LinkTimeout


@runtime_checkable
class ZvtLink(Protocol):
    """Moves APDUs. One reader and one writer at a time; ``close`` is idempotent."""

    async def send_apdu(self, apdu: Apdu) -> None:
        """Send one APDU. Raises :class:`~tillbridge.errors.LinkClosed` (or, on serial,
        ``FrameRejected`` / ``AckMissing``) when it could not be delivered."""
        ...

    async def recv_apdu(self, timeout: float | None) -> Apdu:  # noqa: ASYNC109 - protocol timer
        """The next APDU from the peer. Raises ``LinkTimeout`` after ``timeout`` seconds,
        ``LinkClosed`` when the peer is gone, :class:`~tillbridge.errors.ProtocolError`
        when the bytes are not ZVT. Cancel-safe: a cancelled call loses no data."""
        ...

    async def close(self) -> None: ...


LinkFactory = Callable[[], Awaitable[ZvtLink]]
"""Opens a fresh link; raises :class:`~tillbridge.errors.NotSent` if it cannot connect."""


class MemoryLink:
    """One end of an in-process link (see :func:`memory_link_pair`)."""

    def __init__(self, inbox: asyncio.Queue[Apdu | None], outbox: asyncio.Queue[Apdu | None]):
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False

    async def send_apdu(self, apdu: Apdu) -> None:
        if self._closed:
            raise LinkClosed("link closed")
        self._outbox.put_nowait(apdu)

    async def recv_apdu(self, timeout: float | None) -> Apdu:  # noqa: ASYNC109 - protocol timer
        if self._closed:
            raise LinkClosed("link closed")
        try:
            async with asyncio.timeout(timeout):
                item = await self._inbox.get()
        except TimeoutError:
            raise LinkTimeout(f"nothing received within {timeout} s") from None
        if item is None:
            self._closed = True
            raise LinkClosed("peer closed the link")
        return item

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put_nowait(None)


def memory_link_pair() -> tuple[MemoryLink, MemoryLink]:
    """Two connected in-memory links: what one sends, the other receives."""
    a: asyncio.Queue[Apdu | None] = asyncio.Queue()
    b: asyncio.Queue[Apdu | None] = asyncio.Queue()
    return MemoryLink(a, b), MemoryLink(b, a)
