"""Handlers: the registry mapping a job kind to its handler, and the context a handler receives.

Handler contract (every handler registered here):

* A handler is ``async def handler(ctx: JobContext) -> None``. Returning normally means success.
* Handlers run **at least once**: a worker can die after the handler's effect and before the
  job's completion is recorded, and the job then runs again. So every effect must be keyed and
  idempotent (an ERP external reference, a provider idempotency key, "insert unless present").
* For effects that are pure database work, do them in the transaction that completes the job,
  and they happen **exactly once**::

      async with ctx.transaction() as conn:      # BEGIN; ...; job -> succeeded; COMMIT
          await conn.execute(...)

  or, in a transaction you opened yourself, ``await ctx.complete_in(conn)`` before it commits.
  If the lease was lost meanwhile, :class:`~tillbridge.errors.LeaseLost` is raised and the
  transaction must roll back (let it propagate).
* Raise :class:`~tillbridge.errors.RetryLater` to be run again later (``after=`` honours a
  Retry-After), :class:`~tillbridge.errors.PermanentFailure` to dead-letter at once (both are
  :class:`~tillbridge.errors.JobSignal`, not ``BridgeError``: an ``except BridgeError`` in the
  handler does not swallow them); any other exception is a failed attempt, retried with the
  kind's backoff until attempts run out.
* A handler must never block the event loop (no sync I/O) and must not swallow
  ``asyncio.CancelledError``: the worker cancels handlers that outlive its shutdown timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.clock import Clock
from tillbridge.errors import LeaseLost, UnknownJobKind
from tillbridge.queue import sql
from tillbridge.queue.policy import DEFAULT_RETRY, Periodic
from tillbridge.retry import RetryPolicy

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from tillbridge.store.db import Database


Handler = Callable[["JobContext"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """A registered kind: its handler, retry policy and optional per-attempt timeout (seconds)."""

    kind: str
    handler: Handler
    retry: RetryPolicy = DEFAULT_RETRY
    timeout: float | None = None


class JobRegistry:
    """Kind -> handler, plus the periodic jobs declared in code. Build it at start-up."""

    def __init__(self) -> None:
        self._kinds: dict[str, KindSpec] = {}
        self._periodics: dict[str, Periodic] = {}

    def register(
        self,
        kind: str,
        handler: Handler,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        """Register ``handler`` for ``kind``. Registering a kind twice is a programming error."""
        if not kind or len(kind) > 128:
            raise ValueError("a job kind is 1 to 128 characters")
        if kind in self._kinds:
            raise ValueError(f"job kind {kind!r} is already registered")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive")
        self._kinds[kind] = KindSpec(kind, handler, retry or DEFAULT_RETRY, timeout)

    def handler(
        self, kind: str, *, retry: RetryPolicy | None = None, timeout: float | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`."""

        def decorate(fn: Handler) -> Handler:
            self.register(kind, fn, retry=retry, timeout=timeout)
            return fn

        return decorate

    def periodic(
        self,
        kind: str,
        *,
        every: timedelta,
        offset: timedelta = timedelta(0),
        payload: Mapping[str, Any] | None = None,
        key: str | None = None,
        queue: str = "default",
    ) -> Periodic:
        """Declare that ``kind`` is enqueued once per period (see :class:`Periodic`)."""
        if kind in self._periodics:
            raise ValueError(f"periodic job {kind!r} is already declared")
        spec = Periodic(kind, every, offset, dict(payload or {}), key, queue)
        self._periodics[kind] = spec
        return spec

    def get(self, kind: str) -> KindSpec:
        try:
            return self._kinds[kind]
        except KeyError:
            raise UnknownJobKind(f"no handler registered for job kind {kind!r}") from None

    @property
    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    @property
    def periodics(self) -> list[Periodic]:
        return [self._periodics[k] for k in sorted(self._periodics)]

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds


@dataclass(slots=True)
class JobContext:
    """What a handler knows about its job. Built by the worker, one per attempt."""

    job_id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    key: str | None
    queue: str
    db: Database
    log: FilteringBoundLogger
    worker_id: str
    clock: Clock
    completed: bool = field(default=False)

    def now(self) -> datetime:
        return self.clock()

    async def complete_in(self, conn: AsyncConnection) -> None:
        """Mark this job succeeded inside ``conn``'s transaction (exactly-once DB effects).

        Must be called in a write transaction that has not committed yet; the completion commits
        or rolls back with the handler's own changes. Raises :class:`LeaseLost` when this attempt
        no longer holds the job: the caller must then let its transaction roll back.
        """
        done = await sql.complete(
            conn, worker_id=self.worker_id, pairs=[(self.job_id, self.attempt)], now=self.clock()
        )
        if self.job_id not in done:
            raise LeaseLost(job_id=self.job_id, attempt=self.attempt)
        self.completed = True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction that also completes the job when the block exits normally."""
        async with self.db.write() as conn:
            yield conn
            await self.complete_in(conn)
