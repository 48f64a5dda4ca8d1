"""The worker: claims jobs in batches, runs their handlers, records outcomes, keeps leases alive.

One write transaction per cycle does three things: record the outcomes of the handlers that
finished since the last cycle (batched completion), give back expired leases of dead workers
(the reaper, every ``lease / 2`` or so), and claim as many jobs as there are free slots (batched
claim). Handlers that finish wake the loop, so under load the cycle works like a group commit:
one transaction per batch, not three per job. When a claim comes back empty the loop polls with
an exponential backoff from ``poll_interval`` to ``max_poll_interval``.

The worker's own writes go through one :class:`asyncio.Lock`: on SQLite that avoids two
connections of the same process waiting on each other's file lock (busy-wait sleeps), on
PostgreSQL it rules out the worker deadlocking with itself (heartbeat vs completion rows).

Graceful stop (the ``stop_event`` is set): no more claims; running handlers get up to
``shutdown_timeout`` seconds to finish; the ones still running are cancelled and their jobs are
handed back (``todo``, attempt given back); finished outcomes are flushed. Claimed jobs always
start at once (no local prefetch), so no claimed job is left waiting unstarted.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from tillbridge.clock import Clock, utcnow
from tillbridge.errors import PermanentFailure, RetryLater, StoreError
from tillbridge.queue import sql
from tillbridge.queue.enqueue import schedule_due
from tillbridge.queue.metrics import QueueMetrics
from tillbridge.queue.registry import JobContext, JobRegistry, KindSpec
from tillbridge.queue.sql import ClaimedJob

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from tillbridge.store.db import Database

_log = structlog.get_logger("tillbridge.queue")

#: Errors a cycle survives: the database is down or refused a statement; try again later.
_TRANSIENT = (StoreError, SQLAlchemyError, OSError)

#: Shortest time between two claims triggered by finished keyed jobs (seconds): under a deep
#: per-key backlog every claim scans the blocked jobs, so claiming after every single finished
#: job would spend the database's time on scans.
CLAIM_SPACING = 0.05

_MAX_MESSAGE = 2000
_MAX_TRACEBACK = 4000
_TRACEBACK_FRAMES = 8


def error_info(exc: BaseException, attempt: int, now: datetime) -> dict[str, Any]:
    """The stored form of a failure: type, message and a short traceback (innermost frames)."""
    cls = type(exc)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    tb = "".join(traceback.format_exception(exc, limit=-_TRACEBACK_FRAMES))
    return {
        "type": name,
        "message": str(exc)[:_MAX_MESSAGE],
        "traceback": tb[-_MAX_TRACEBACK:],
        "attempt": attempt,
        "at": now.isoformat(),
    }


@dataclass(slots=True)
class _Outcome:
    job: ClaimedJob
    ok: bool
    dead: bool = False
    run_after: datetime | None = None
    error: dict[str, Any] | None = None
    give_back: bool = False
    completed_in: bool = False


class Worker:
    """Runs the handlers of ``registry`` for jobs of ``queues``, ``concurrency`` at a time.

    A worker only claims kinds it has a handler for. Several workers (processes, hosts) may run
    against one PostgreSQL database; on SQLite run one worker process per database file.
    ``clock`` and ``rng`` are injectable so tests move time instead of sleeping.
    """

    def __init__(
        self,
        db: Database,
        registry: JobRegistry,
        *,
        concurrency: int = 8,
        queues: tuple[str, ...] = ("default",),
        batch_size: int | None = None,
        lease: timedelta = timedelta(seconds=30),
        heartbeat_interval: float | None = None,
        poll_interval: float = 0.05,
        max_poll_interval: float = 1.0,
        shutdown_timeout: float = 30.0,
        scheduler: bool = True,
        clock: Clock = utcnow,
        rng: random.Random | None = None,
        metrics: QueueMetrics | None = None,
        metrics_registry: CollectorRegistry | None = None,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease < timedelta(seconds=1):
            raise ValueError("lease must be at least one second")
        self.db = db
        self.registry = registry
        self.concurrency = concurrency
        self.queues = queues
        self.batch_size = batch_size or concurrency
        self.lease = lease
        self.heartbeat_interval = heartbeat_interval or lease.total_seconds() / 3
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.shutdown_timeout = shutdown_timeout
        self.scheduler = scheduler
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.metrics = metrics or QueueMetrics(metrics_registry)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.log = _log.bind(worker_id=self.worker_id)
        pool_size = getattr(db.engine.pool, "size", None)
        if callable(pool_size) and not db.is_sqlite and pool_size() < concurrency + 2:
            # Handlers that use the database each hold a connection: with fewer pooled ones
            # they queue for overflow connections that are opened and closed every time.
            self.log.warning(
                "database pool smaller than worker concurrency + 2",
                pool_size=pool_size(),
                concurrency=concurrency,
            )
        self._running: dict[tuple[int, int], tuple[ClaimedJob, asyncio.Task[None]]] = {}
        self._done: list[_Outcome] = []
        self._cancelled: list[ClaimedJob] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._next_reap: datetime | None = None
        self._more_work = True
        self._key_freed = False

    # ------------------------------------------------------------------------------ public

    async def run(self, stop_event: asyncio.Event) -> None:
        """Work until ``stop_event`` is set, then stop gracefully (see the module docstring)."""
        await self._run(stop_event, until_idle=False)

    async def run_until_idle(self) -> None:
        """Work until nothing is claimable and nothing is running (tests, one-shot runs).

        Jobs scheduled in the future, or held by another worker's lease, are not waited for.
        The scheduler loop does not run here: call :func:`schedule_due` for periodic jobs.
        """
        await self._run(asyncio.Event(), until_idle=True)

    # -------------------------------------------------------------------------- main loop

    async def _run(self, stop: asyncio.Event, *, until_idle: bool) -> None:
        helpers = [
            asyncio.create_task(self._relay(stop)),
            asyncio.create_task(self._heartbeat_loop()),
        ]
        if self.scheduler and not until_idle and self.registry.periodics:
            helpers.append(asyncio.create_task(self._scheduler_loop(stop)))
        self.log.info("worker started", concurrency=self.concurrency, kinds=self.registry.kinds)
        try:
            await self._loop(stop, until_idle)
        finally:
            # Shut down while the heartbeat still runs: handlers finishing during the shutdown
            # timeout must keep their leases, or another worker would start them again.
            try:
                await self._shutdown()
            finally:
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
            self.log.info("worker stopped")

    async def _loop(self, stop: asyncio.Event, until_idle: bool) -> None:
        # When to claim: a claim scans the ready jobs, so it is the expensive statement. Claim
        # at once after a full batch (more work is waiting) as soon as enough slots are free;
        # soon (at most every CLAIM_SPACING) after a keyed job finished, as the next job of its
        # key may now be ready; otherwise at the poll time, which backs off while claims come
        # back empty. Outcomes of finished handlers are flushed at every wake-up, claim or not.
        delay = self.poll_interval
        next_poll = 0.0
        last_claim = 0.0
        # With more work waiting, claim once a quarter of the slots is free rather than for
        # every single finished job: one claim (one scan) per batch, not per job.
        min_batch = max(1, min(self.batch_size, self.concurrency // 4))
        while not stop.is_set():
            free = min(self.concurrency - len(self._running), self.batch_size)
            now = time.monotonic()
            due = next_poll
            if (self._more_work and free >= min_batch) or (until_idle and not self._running):
                due = 0.0
            elif self._key_freed:
                due = min(due, last_claim + CLAIM_SPACING)
            claim = free > 0 and now >= due
            if not claim and not self._done:
                await self._sleep(None if free <= 0 else due - now)
                continue
            want = free if claim else 0
            if claim:
                self._more_work = self._key_freed = False
                last_claim = now
            try:
                claimed = await self._cycle(want)
            except _TRANSIENT as exc:
                self.log.warning("queue cycle failed", error=repr(exc)[:300], retry_in=delay)
                delay = min(delay * 2, self.max_poll_interval)
                next_poll = time.monotonic() + delay
                await self._sleep(delay)
                continue
            for job in claimed:
                self._start(job)
            if not claim:
                continue
            if until_idle and not claimed and not self._running and not self._done:
                return
            if len(claimed) == want:
                # A full batch: more work is likely waiting. Let the new handlers start, go on.
                self._more_work = True
                delay = self.poll_interval
                next_poll = time.monotonic() + delay
                await asyncio.sleep(0)
                continue
            delay = self.poll_interval if claimed else min(delay * 2, self.max_poll_interval)
            next_poll = time.monotonic() + delay

    async def _sleep(self, seconds: float | None) -> None:
        """Wait for a finished handler, the stop event or ``seconds``, whichever comes first."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _cycle(self, want: int, release: list[ClaimedJob] | None = None) -> list[ClaimedJob]:
        """One write transaction: flush outcomes, reap if due, release, claim up to ``want``."""
        async with self._lock:
            done, self._done = self._done, []
            try:
                now = self.clock()
                async with self.db.write() as conn:
                    changed = await self._flush(conn, done, now)
                    if release:
                        pairs = [(j.id, j.attempts) for j in release]
                        await sql.release(conn, worker_id=self.worker_id, pairs=pairs, now=now)
                    if want > 0 and (self._next_reap is None or now >= self._next_reap):
                        await self._reap(conn, now)
                    claimed = await sql.claim(
                        conn,
                        worker_id=self.worker_id,
                        queues=self.queues,
                        kinds=self.registry.kinds,
                        limit=want,
                        now=now,
                        lease_until=now + self.lease,
                    )
            except BaseException:
                self._done[:0] = done  # keep the outcomes for the next cycle
                raise
        self._count(done, changed, claimed)
        return claimed

    async def _flush(self, conn: AsyncConnection, done: list[_Outcome], now: datetime) -> set[int]:
        # Jobs completed by the handler itself (JobContext.complete_in) are already recorded.
        ok = [(o.job.id, o.job.attempts) for o in done if o.ok and not o.completed_in]
        changed = await sql.complete(conn, worker_id=self.worker_id, pairs=ok, now=now)
        for o in done:
            if o.ok:
                continue
            assert o.error is not None and o.run_after is not None
            if await sql.fail(
                conn,
                worker_id=self.worker_id,
                job_id=o.job.id,
                attempt=o.job.attempts,
                dead=o.dead,
                run_after=o.run_after,
                error=o.error,
                give_back_attempt=o.give_back,
                now=now,
            ):
                changed.add(o.job.id)
        return changed

    async def _reap(self, conn: AsyncConnection, now: datetime) -> None:
        error = {
            "type": "LeaseExpired",
            "message": "the worker holding the job stopped renewing its lease (died or stalled)",
            "traceback": None,
            "at": now.isoformat(),
        }
        reaped = await sql.reap(conn, now=now, error=error)
        if reaped:
            self.log.warning("expired leases reaped", jobs=[job_id for job_id, _ in reaped])
        self._next_reap = now + min(self.lease / 2, timedelta(seconds=5))

    def _count(self, done: list[_Outcome], changed: set[int], claimed: list[ClaimedJob]) -> None:
        m = self.metrics
        for job in claimed:
            m.claimed.labels(job.kind).inc()
        for o in done:
            if o.job.id not in changed and not (o.ok and o.completed_in):
                if o.completed_in:
                    self.log.warning("handler failed after completing its job", job_id=o.job.id)
                    m.succeeded.labels(o.job.kind).inc()
                else:
                    # Someone else holds the job now (our lease expired): it runs again there.
                    self.log.warning("lease lost, outcome dropped", job_id=o.job.id)
                continue
            if o.ok:
                m.succeeded.labels(o.job.kind).inc()
            elif o.dead:
                m.dead.labels(o.job.kind).inc()
            else:
                m.failed.labels(o.job.kind).inc()

    # --------------------------------------------------------------------------- handlers

    def _start(self, job: ClaimedJob) -> None:
        spec = self.registry.get(job.kind)
        task = asyncio.create_task(self._execute(job, spec), name=f"job-{job.id}")
        self._running[(job.id, job.attempts)] = (job, task)

    async def _execute(self, job: ClaimedJob, spec: KindSpec) -> None:
        limit = job.max_attempts or spec.retry.max_attempts
        log = self.log.bind(job_id=job.id, kind=job.kind, attempt=job.attempts)
        ctx = JobContext(
            job_id=job.id,
            kind=job.kind,
            payload=job.payload,
            attempt=job.attempts,
            key=job.key,
            queue=job.queue,
            db=self.db,
            log=log,
            worker_id=self.worker_id,
            clock=self.clock,
        )
        started = time.perf_counter()
        outcome: _Outcome
        try:
            if job.attempts > limit:
                # Only a lease lost on the last attempt gets here: that attempt counted.
                outcome = self._exhausted(job, limit)
            else:
                async with asyncio.timeout(spec.timeout):
                    await spec.handler(ctx)
                outcome = _Outcome(job, ok=True, completed_in=ctx.completed)
        except asyncio.CancelledError:
            self._running.pop((job.id, job.attempts), None)
            self._cancelled.append(job)
            raise
        except Exception as exc:
            # Even if the handler called complete_in, its transaction may not have committed:
            # record a failure. The update is fenced on status 'running', so it changes nothing
            # if the completion did commit.
            outcome = self._failure(job, spec, limit, exc)
            outcome.completed_in = ctx.completed
            level = "error" if outcome.dead else "warning"
            getattr(log, level)("job failed", dead=outcome.dead, error=repr(exc)[:300])
        self.metrics.duration.labels(job.kind).observe(time.perf_counter() - started)
        self._running.pop((job.id, job.attempts), None)
        self._done.append(outcome)
        if job.key is not None:
            self._key_freed = True  # the next job of this key may be ready now
        self._wake.set()

    def _failure(self, job: ClaimedJob, spec: KindSpec, limit: int, exc: Exception) -> _Outcome:
        now = self.clock()
        error = error_info(exc, job.attempts, now)
        if isinstance(exc, PermanentFailure):
            return _Outcome(job, ok=False, dead=True, run_after=now, error=error)
        if isinstance(exc, RetryLater):
            run_after = _resolve_after(exc.after, now) or now + spec.retry.delay(
                job.attempts, self.rng
            )
            dead = exc.count_attempt and job.attempts >= limit
            give_back = not exc.count_attempt
            return _Outcome(job, False, dead, run_after, error, give_back)
        if job.attempts >= limit:
            return _Outcome(job, ok=False, dead=True, run_after=now, error=error)
        delay = spec.retry.delay(job.attempts, self.rng)
        return _Outcome(job, ok=False, run_after=now + delay, error=error)

    def _exhausted(self, job: ClaimedJob, limit: int) -> _Outcome:
        now = self.clock()
        error = dict(job.last_error or {"type": "LeaseExpired", "message": "lease expired"})
        error["message"] = f"{error.get('message', '')} (attempts exhausted: {limit})"
        return _Outcome(job, ok=False, dead=True, run_after=now, error=error)

    # ---------------------------------------------------------------------- helper loops

    async def _heartbeat_loop(self) -> None:
        # Runs until cancelled, after the shutdown has finished (see _run).
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            ids = [job.id for job, _ in self._running.values()]
            ids += [o.job.id for o in self._done]
            if not ids:
                continue
            try:
                async with self._lock, self.db.write() as conn:
                    until = self.clock() + self.lease
                    await sql.extend_leases(conn, worker_id=self.worker_id, ids=ids, until=until)
            except _TRANSIENT as exc:
                self.log.warning("heartbeat failed", error=repr(exc)[:300])

    async def _scheduler_loop(self, stop: asyncio.Event) -> None:
        periodics = self.registry.periodics
        while not stop.is_set():
            try:
                async with self._lock:
                    await schedule_due(self.db, periodics, self.clock())
            except _TRANSIENT as exc:
                self.log.warning("scheduler tick failed", error=repr(exc)[:300])
            now = self.clock()
            wait = min((p.next_start(now) - now).total_seconds() for p in periodics)
            try:
                async with asyncio.timeout(min(max(wait, 0.05), 30.0)):
                    await stop.wait()
            except TimeoutError:
                pass

    # --------------------------------------------------------------------------- shutdown

    async def _shutdown(self) -> None:
        tasks = [task for _, task in self._running.values()]
        if tasks:
            self.log.info("waiting for running jobs", jobs=len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=self.shutdown_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for attempt in range(3):
            if not self._done and not self._cancelled:
                return
            release, self._cancelled = self._cancelled, []
            try:
                await self._cycle(0, release=release)
            except _TRANSIENT as exc:
                self._cancelled[:0] = release
                self.log.warning("final flush failed", error=repr(exc)[:300], attempt=attempt)
                await asyncio.sleep(0.2 * (attempt + 1))
        if self._done or self._cancelled:
            self.log.error("outcomes not recorded; leases will expire and the jobs run again")


def _resolve_after(after: float | timedelta | datetime | None, now: datetime) -> datetime | None:
    if after is None:
        return None
    if isinstance(after, datetime):
        # A naive datetime is read as UTC rather than failing the failure path itself.
        return max(after if after.tzinfo else after.replace(tzinfo=UTC), now)
    if isinstance(after, timedelta):
        return now + max(after, timedelta(0))
    return now + timedelta(seconds=max(float(after), 0.0))
