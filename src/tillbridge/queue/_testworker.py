"""TEST TOOL, not for production: a worker process with instrumented handlers.

Used by the fault tests (kill -9) and the multi-process tests and benchmarks::

    python -m tillbridge.queue._testworker DATABASE_URL [--concurrency N] [--lease SECONDS]
        [--batch N] [--ready-file PATH] [--worker-id NAME] [--max-poll SECONDS]

It runs a real :class:`~tillbridge.queue.Worker` until SIGTERM/SIGINT. Its handlers write into
test-only tables declared on :data:`test_metadata` (not the product schema); the test creates
them with :func:`create_test_tables` before starting workers.

Handlers:

``qt.noop``
    Does nothing (batched completion). For throughput.
``qt.effect``
    Keyed job, transaction 1: records the execution (``qt_executions``) and takes the job's key
    in ``qt_running_keys`` (primary key: a second concurrent holder of the key is recorded in
    ``qt_violations``). Transaction 2 (the only one of a keyless job, which records its
    execution there): releases the key, records the effect (``qt_effects``, primary key job id)
    and completes the job with ``ctx.transaction()`` (exactly once). Every handler call is also
    counted in memory and written to ``qt_counts`` when the worker stops gracefully.
``qt.block``
    Attempt 1 records the execution, writes ``qt_ready`` and blocks forever (until the process
    is killed). Later attempts behave like ``qt.effect``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.queue.registry import JobContext, JobRegistry
from tillbridge.queue.worker import Worker
from tillbridge.store.db import Database, sync_url
from tillbridge.store.sql import insert_or_ignore

test_metadata = MetaData()
_Id = BigInteger().with_variant(Integer, "sqlite")

qt_executions = Table(
    "qt_executions",
    test_metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("job_id", BigInteger, nullable=False),
    Column("key", String(255)),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(128), nullable=False),
)
qt_effects = Table(
    "qt_effects",
    test_metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("worker", String(128), nullable=False),
)
qt_running_keys = Table(
    "qt_running_keys",
    test_metadata,
    Column("key", String(255), primary_key=True),
    Column("job_id", BigInteger, nullable=False),
)
qt_violations = Table(
    "qt_violations",
    test_metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("job_id", BigInteger, nullable=False),
    Column("key", String(255)),
)
qt_counts = Table(
    "qt_counts",
    test_metadata,
    Column("worker", String(128), primary_key=True),
    Column("invocations", Integer, nullable=False),
)
qt_ready = Table(
    "qt_ready",
    test_metadata,
    Column("job_id", BigInteger, primary_key=True),
    Column("worker", String(128), nullable=False),
)


def create_test_tables(url: str) -> None:
    """Drop and create the test tables (synchronously; call before starting workers)."""
    engine = create_engine(sync_url(url))
    test_metadata.drop_all(engine)
    test_metadata.create_all(engine)
    engine.dispose()


_invocations = 0  # handler calls in this process, written to qt_counts on a graceful stop


async def _start(ctx: JobContext) -> None:
    """Record the execution; a keyed job also takes its key (committed, visible to all)."""
    global _invocations
    _invocations += 1
    if ctx.key is None:
        return  # recorded in the completion transaction (one transaction per keyless job)
    async with ctx.db.write() as conn:
        await _record_execution(conn, ctx)
        if not await _insert_ignore(conn, ctx.key, ctx.job_id):
            holder = await conn.scalar(
                select(qt_running_keys.c.job_id).where(qt_running_keys.c.key == ctx.key)
            )
            # An earlier attempt of this same job died holding the key: that is a rerun, not
            # two jobs of one key at the same time.
            if holder != ctx.job_id:
                await conn.execute(insert(qt_violations).values(job_id=ctx.job_id, key=ctx.key))


async def _record_execution(conn: AsyncConnection, ctx: JobContext) -> None:
    await conn.execute(
        insert(qt_executions).values(
            job_id=ctx.job_id, key=ctx.key, attempt=ctx.attempt, worker=ctx.worker_id
        )
    )


_TAKE_KEY = insert_or_ignore(qt_running_keys, returning=[qt_running_keys.c.key])


async def _insert_ignore(conn: AsyncConnection, key: str, job_id: int) -> bool:
    # RETURNING, not rowcount: the driver's rowcount is not reliable for INSERT ... ON CONFLICT.
    inserted = await conn.execute(_TAKE_KEY.on(conn), {"key": key, "job_id": job_id})
    return inserted.first() is not None


async def _finish(ctx: JobContext) -> None:
    """Release the key, record the effect and complete the job: one transaction, exactly once."""
    async with ctx.transaction() as conn:
        if ctx.key is None:
            await _record_execution(conn, ctx)
        else:
            await conn.execute(
                delete(qt_running_keys).where(
                    qt_running_keys.c.key == ctx.key, qt_running_keys.c.job_id == ctx.job_id
                )
            )
        await conn.execute(insert(qt_effects).values(job_id=ctx.job_id, worker=ctx.worker_id))


async def _write_count(url: str, worker: str) -> None:
    db = Database(url)
    try:
        async with db.write() as conn:
            await conn.execute(insert(qt_counts).values(worker=worker, invocations=_invocations))
    finally:
        await db.dispose()


def build_registry() -> JobRegistry:
    registry = JobRegistry()

    @registry.handler("qt.noop")
    async def noop(ctx: JobContext) -> None:
        return None

    @registry.handler("qt.effect")
    async def effect(ctx: JobContext) -> None:
        await _start(ctx)
        await _finish(ctx)

    @registry.handler("qt.block")
    async def block(ctx: JobContext) -> None:
        await _start(ctx)
        if ctx.attempt == 1:
            async with ctx.db.write() as conn:
                await conn.execute(insert(qt_ready).values(job_id=ctx.job_id, worker=ctx.worker_id))
            await asyncio.Event().wait()  # until kill -9
        await _finish(ctx)

    return registry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tillbridge.queue._testworker")
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--ready-file", type=Path, default=None)
    parser.add_argument("--worker-id", default=None)
    parser.add_argument("--max-poll", type=float, default=1.0, help="longest idle poll (s)")
    args = parser.parse_args(argv)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if args.ready_file is not None:
            args.ready_file.write_text("ready\n")
        # Every running handler may hold a connection, plus the worker's cycle and heartbeat.
        db = Database(args.url, pool_size=args.concurrency + 4)
        try:
            worker = Worker(
                db,
                build_registry(),
                concurrency=args.concurrency,
                batch_size=args.batch,
                lease=timedelta(seconds=args.lease),
                worker_id=args.worker_id,
                shutdown_timeout=5.0,
                max_poll_interval=args.max_poll,
            )
            await worker.run(stop)
        finally:
            await db.dispose()
        if args.worker_id is not None:
            await _write_count(args.url, args.worker_id)

    asyncio.run(run())


if __name__ == "__main__":
    main()
