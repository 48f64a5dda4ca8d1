"""Group commit for the intake: one write transaction stores every delivery waiting for it.

Why: each delivery needs its own durable commit before its 2xx. Committing them one by one
makes concurrent requests of one process queue for the database's write lock (on SQLite a file
lock whose waiters poll with sleeps), so throughput collapses under load. Here requests hand
their row to one writer task per process and wait; the writer takes *everything* waiting, stores
it with :func:`tillbridge.inbound.inbox.store_many` (three statements for the whole batch),
commits, and then wakes the requests. Under light load a batch is one delivery (no added
latency: nothing waits for a batch to fill); under heavy load batches grow by themselves.

Guarantees: a request returns only after the transaction holding its row committed; if the
transaction fails, every request of that batch gets the error (nothing of it was stored, so the
senders' retries are safe) and the writer carries on with the next batch. Cancelling a waiting
request (client gone) does not cancel the batch: its row may still be stored, which is harmless
because a resend is deduplicated.

On SQLite, the writers of several API processes also queue for an OS file lock (``flock`` on
``<database>.intake-lock``) before ``BEGIN IMMEDIATE``. SQLite's own busy handler waits for its
lock by sleeping in steps of up to 100 ms, which is what sets the tail latency when two
processes take turns; a process blocked in ``flock`` is woken the moment the lock is free.
Other writers (the worker, the payments API) still use SQLite's busy handler as before.

One instance per event loop; it starts its task on first use and stops with :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import structlog
from sqlalchemy.engine import make_url

from tillbridge.errors import StoreUnavailable
from tillbridge.inbound import inbox
from tillbridge.inbound.inbox import NewDelivery
from tillbridge.store.db import Database

try:  # POSIX only; elsewhere SQLite's busy handler alone serialises the writers.
    import fcntl as _fcntl
except ImportError:  # pragma: no cover
    _fcntl = None  # type: ignore[assignment]

log = structlog.get_logger("tillbridge.inbound")

#: Upper bound of one batch (SQLite caps bound parameters per statement at 32,766).
MAX_BATCH: Final = 500


class InboxWriter:
    """See the module docstring."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.max_batch = max_batch
        self._pending: list[tuple[NewDelivery, asyncio.Future[tuple[int, bool]]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def store(self, new: NewDelivery) -> tuple[int, bool]:
        """Store ``new`` durably (or find its earlier copy); ``(inbox_id, created)``."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name="tillbridge-inbox-writer")
        future: asyncio.Future[tuple[int, bool]] = loop.create_future()
        self._pending.append((new, future))
        self._wake.set()
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                try:
                    async with self._file_lock(), self.db.write() as conn:
                        results = await inbox.store_many(conn, [n for n, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError("store_many must return one result per delivery")
                except BaseException as exc:
                    # The batch failed (nothing of it committed) or the writer is stopping (it
                    # may have): every waiting request must hear it and answer 5xx, never hang.
                    # A resend is harmless either way: it is deduplicated.
                    log.warning("webhook.store_failed", rows=len(batch), error=repr(exc)[:300])
                    failure = exc if isinstance(exc, Exception) else _stopped()
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)

    @contextlib.asynccontextmanager
    async def _file_lock(self) -> AsyncIterator[None]:
        path = _lock_path(self.db)
        if path is None:
            yield
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        loop = asyncio.get_running_loop()
        acquired = loop.run_in_executor(None, _flock, fd)
        try:
            await asyncio.shield(acquired)
        except BaseException:
            # Cancelled while the thread waits: release as soon as it gets the lock, never hold
            # it for a writer that is gone.
            acquired.add_done_callback(lambda _f: _unlock_close(fd))
            raise
        try:
            yield
        finally:
            _unlock_close(fd)

    async def aclose(self) -> None:
        """Stop the writer; waiting requests get :class:`StoreUnavailable` (503: send again)."""
        task, self._task = self._task, None
        pending, self._pending = self._pending, []
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(_stopped())
        if task is None or task.done():
            return
        task.cancel()
        if task.get_loop() is asyncio.get_running_loop():
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _stopped() -> StoreUnavailable:
    return StoreUnavailable("the bridge is stopping; the delivery may not be stored: send again")


def _lock_path(db: Database) -> str | None:
    if not db.is_sqlite or _fcntl is None:
        return None
    name = make_url(db.url).database
    if not name or name == ":memory:":
        return None
    return str(Path(name).expanduser()) + ".intake-lock"


def _flock(fd: int) -> None:
    assert _fcntl is not None
    _fcntl.flock(fd, _fcntl.LOCK_EX)


def _unlock_close(fd: int) -> None:
    try:
        if _fcntl is not None:
            _fcntl.flock(fd, _fcntl.LOCK_UN)
    finally:
        os.close(fd)
