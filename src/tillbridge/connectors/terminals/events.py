"""Terminal events: stored per payment, replayed and streamed as Server-Sent Events.

What a terminal reports while a payment runs (display texts, prompts, receipt lines) and what
the bridge does with it (state changes, recovery, operator instructions) is appended to
``terminal_events``. A late subscriber of ``GET /v1/payments/{id}/events`` first gets
everything so far, then new events as they are committed; the stream ends once the payment is
final (or waits for an operator).

Writes are batched on purpose: a terminal's display events are collected in an
:class:`EventBuffer` and written with the payment's own transactions (the one that stores the
terminal's result, the one that applies the outcome) or, while the customer is still at the
terminal, by a background flush at most every :data:`FLUSH_WINDOW_S`. A payment therefore costs
a handful of transactions, not one per display line. Events are informational: losing the
unflushed tail in a crash loses no money evidence (the result itself is written synchronously).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import structlog
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.clock import as_utc
from tillbridge.connectors.terminals.tables import terminal_events, terminal_payments
from tillbridge.domain.states import PaymentState
from tillbridge.payments.contract import ConnectorEvent
from tillbridge.store.db import Database
from tillbridge.store.tables import payments

log = structlog.get_logger("tillbridge.connectors.terminals")

#: Longest a display event waits in memory before a background flush writes it.
FLUSH_WINDOW_S: Final = 0.05
#: Kinds the bridge adds to the terminal's own (display, prompt, receipt_line, state).
INPUT: Final = "input"
OPERATOR: Final = "operator"
END: Final = "end"

#: A stream ends when the payment is in one of these (nothing more will happen on its own).
STREAM_DONE: Final = frozenset(
    {
        PaymentState.CAPTURED,
        PaymentState.DECLINED,
        PaymentState.FAILED,
        PaymentState.CANCELED,
        PaymentState.REFUNDED,
        PaymentState.PARTIALLY_REFUNDED,
        PaymentState.VOIDED,
        PaymentState.EXPIRED,
    }
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    payment_id: str
    kind: str
    text: str
    receipt: str | None
    code: int | None
    data: dict[str, Any] | None
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        at = as_utc(self.created_at) or self.created_at
        return {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "receipt": self.receipt,
            "code": self.code,
            "data": self.data,
            "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    def sse(self) -> bytes:
        body = json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)
        return f"id: {self.id}\nevent: {self.kind}\ndata: {body}\n\n".encode()


def event_row(
    payment_id: str,
    terminal: str,
    kind: str,
    text: str,
    now: datetime,
    *,
    receipt: str | None = None,
    code: int | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "terminal": terminal,
        "kind": kind,
        "text": text[:2000],
        "receipt": receipt,
        "code": code,
        "data": data,
        "created_at": now,
    }


class EventLog:
    """Append, read and stream the events of terminal payments.

    ``notify`` wakes streams of this process at once; streams served by another process
    (``serve --no-worker`` plus a separate worker) notice new events by polling.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self._waiters: dict[str, set[asyncio.Event]] = {}

    async def add(
        self,
        conn: AsyncConnection,
        payment_id: str,
        terminal: str,
        kind: str,
        text: str,
        **extra: Any,
    ) -> None:
        """Append one event in the caller's transaction (call :meth:`notify` after commit)."""
        await self.add_rows(
            conn, [event_row(payment_id, terminal, kind, text, self.clock(), **extra)]
        )

    async def add_rows(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        if rows:
            await conn.execute(insert(terminal_events), rows)

    def notify(self, payment_id: str) -> None:
        for waiter in self._waiters.get(payment_id, ()):
            waiter.set()

    async def since(
        self, conn: AsyncConnection, payment_id: str, after_id: int, limit: int = 500
    ) -> list[StoredEvent]:
        q = (
            select(terminal_events)
            .where(terminal_events.c.payment_id == payment_id, terminal_events.c.id > after_id)
            .order_by(terminal_events.c.id)
            .limit(limit)
        )
        return [
            StoredEvent(
                id=r["id"],
                payment_id=r["payment_id"],
                kind=r["kind"],
                text=r["text"],
                receipt=r["receipt"],
                code=r["code"],
                data=r["data"],
                created_at=r["created_at"],
            )
            for r in (await conn.execute(q)).mappings()
        ]

    async def _snapshot(self, payment_id: str, after_id: int) -> tuple[bool, list[StoredEvent]]:
        """``(done, new events)``. The state is read *before* the events in one transaction:
        the final state change commits with its events, so "done" implies they are visible."""
        async with self.db.read() as conn:
            q = (
                select(payments.c.state, terminal_payments.c.needs_operator)
                .select_from(payments.outerjoin(terminal_payments))
                .where(payments.c.id == payment_id)
            )
            row = (await conn.execute(q)).first()
            events = await self.since(conn, payment_id, after_id)
        if row is None:
            return True, events
        state, needs_operator = PaymentState(row[0]), bool(row[1])
        done = state in STREAM_DONE or (state == PaymentState.UNKNOWN and needs_operator)
        return done, events

    async def stream(
        self,
        payment_id: str,
        last_id: int = 0,
        *,
        poll_s: float = 0.5,
        keepalive_s: float = 15.0,
        max_s: float = 900.0,
    ) -> AsyncIterator[bytes]:
        """SSE bytes: every event after ``last_id``, then new ones until the payment is done.

        Ends with an ``end`` event carrying the state. After ``max_s`` the stream closes
        without ``end``; the client reconnects with ``Last-Event-ID`` and misses nothing.
        """
        waiter = asyncio.Event()
        self._waiters.setdefault(payment_id, set()).add(waiter)
        started = last_beat = time.monotonic()
        try:
            while True:
                waiter.clear()
                done, events = await self._snapshot(payment_id, last_id)
                for ev in events:
                    last_id = ev.id
                    yield ev.sse()
                if events:
                    continue  # there may be more than one page
                if done:
                    yield b"event: end\ndata: {}\n\n"
                    return
                now = time.monotonic()
                if now - started > max_s:
                    return
                if now - last_beat >= keepalive_s:
                    last_beat = now
                    yield b": keep-alive\n\n"
                with contextlib.suppress(TimeoutError):
                    # Woken by notify() in this process; the timeout is the cross-process poll.
                    await asyncio.wait_for(waiter.wait(), poll_s)
        finally:
            waiters = self._waiters.get(payment_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[payment_id]


class EventBuffer:
    """Events of one running payment, held briefly in memory and written in batches.

    ``on_event`` is the connector's event callback: it only appends (quick, never raises). The
    owner takes pending rows with :meth:`drain` into its own transactions while holding
    :attr:`lock`, and :meth:`stop` writes whatever is left.
    """

    def __init__(self, log_: EventLog, payment_id: str, terminal: str) -> None:
        self.log = log_
        self.payment_id = payment_id
        self.terminal = terminal
        self.lock = asyncio.Lock()
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flusher())

    def add(self, kind: str, text: str, **extra: Any) -> None:
        row = event_row(self.payment_id, self.terminal, kind, text, self.log.clock(), **extra)
        self._pending.append(row)
        self._wake.set()

    async def on_event(self, ev: ConnectorEvent) -> None:
        self.add(
            str(ev.kind),
            ev.text,
            receipt=str(ev.receipt) if ev.receipt is not None else None,
            code=ev.code,
        )

    def requeue(self, rows: list[dict[str, Any]]) -> None:
        """Put drained rows back in front (their transaction failed)."""
        self._pending[:0] = rows

    def drain(self) -> list[dict[str, Any]]:
        rows, self._pending = self._pending, []
        return rows

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Batch what arrives within the window into one transaction.
            await asyncio.sleep(FLUSH_WINDOW_S)
            async with self.lock:
                rows = self.drain()
                if not rows:
                    continue
                try:
                    async with self.log.db.write() as conn:
                        await self.log.add_rows(conn, rows)
                except Exception:  # display events must never break a running payment
                    log.warning("terminal.events_not_written", payment_id=self.payment_id)
                    continue
            self.log.notify(self.payment_id)

    async def stop(self) -> None:
        """Stop the background flush; a write in progress finishes first. Rows still pending
        stay for the caller's final transaction (:meth:`drain`)."""
        task, self._task = self._task, None
        if task is None:
            return
        async with self.lock:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
