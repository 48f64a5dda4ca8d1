"""Who owns a terminal's link right now: the lease per terminal.

Two layers, because a terminal link is a single-session resource (DESIGN §6):

* **Across processes and hosts** the lease is the job queue's per-key serialization: every job
  that talks to terminal ``lane1`` (payment, recovery, end of day) is keyed ``terminal:lane1``,
  so at most one of them runs at a time on any worker, in enqueue order. The job's lease (with
  heartbeats) is the terminal's lease: if the worker dies, the lease expires, another worker
  takes the job over, finds the payment ``in_progress`` and recovers it instead of resending.
* **Inside one process** :class:`TerminalSessions` guards the link itself with one lock per
  terminal, so code paths that do not come through the queue (benchmarks, tools) can never
  interleave two conversations on one terminal either.

The :class:`ActiveSession` also carries what the connector's hooks need while a payment runs:
the payment id (for ``persist_result``), its event buffer, and the abort request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tillbridge.connectors.terminals.events import EventBuffer
from tillbridge.errors import TerminalBusy
from tillbridge.payments.contract import ConnectorResult


@dataclass
class ActiveSession:
    """The one conversation a terminal is having (see the module docstring)."""

    terminal: str
    payment_id: str | None = None
    buffer: EventBuffer | None = None
    persist: Callable[[ConnectorResult], Awaitable[None]] | None = None
    abort_wanted: bool = False
    abort_delivered: bool = False
    abort_signal: asyncio.Event = field(default_factory=asyncio.Event)


class TerminalSessions:
    """One lock per terminal; :meth:`hold` is the only way to talk to a terminal."""

    def __init__(self, names: list[str]) -> None:
        self._locks = {name: asyncio.Lock() for name in names}
        self._active: dict[str, ActiveSession] = {}

    def active(self, terminal: str) -> ActiveSession | None:
        return self._active.get(terminal)

    def busy(self, terminal: str) -> bool:
        lock = self._locks.get(terminal)
        return lock is not None and lock.locked()

    @asynccontextmanager
    async def hold(self, terminal: str, *, wait_s: float) -> AsyncIterator[ActiveSession]:
        """Own ``terminal`` for the block. Waits at most ``wait_s`` seconds for the current
        owner, then raises :class:`TerminalBusy` (nothing was sent)."""
        lock = self._locks[terminal]
        try:
            async with asyncio.timeout(max(wait_s, 0.0)):
                await lock.acquire()
        except TimeoutError:
            raise TerminalBusy(
                f"terminal {terminal} is busy with another payment", terminal=terminal
            ) from None
        session = ActiveSession(terminal)
        self._active[terminal] = session
        try:
            yield session
        finally:
            del self._active[terminal]
            lock.release()
