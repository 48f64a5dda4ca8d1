"""Benchmark: drain no-op jobs through real worker processes and print jobs per second.

    .venv/bin/python bench/queue_drain.py [--jobs 20000] [--engine sqlite|postgres|both]
        [--pg-workers 2] [--concurrency 64] [--pg-admin-url URL]

SQLite: one worker process. PostgreSQL: ``--pg-workers`` processes (default 2) on a fresh,
dropped-afterwards database. Workers are started and ready first; the clock runs from the commit
of the enqueue transaction until no job is unfinished (polled every 10 ms), so process start-up
is not counted but wake-up latency is. Targets (2 cores): SQLite >= 2,000 jobs/s with one worker,
PostgreSQL >= 4,000 jobs/s with two workers. Run by hand; never a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from tillbridge.queue import NewJob, enqueue_many
from tillbridge.queue import sql as qsql
from tillbridge.queue._testworker import create_test_tables
from tillbridge.store.db import Database, sync_url
from tillbridge.store.schema import all_tables

PG_ADMIN = os.environ.get(
    "TILLBRIDGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()} {os.cpu_count()} cpus {cpu}, Python {platform.python_version()}"


def start_workers(url: str, n: int, concurrency: int, tmp: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(n):
        ready = tmp / f"ready-{i}"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tillbridge.queue._testworker",
                    url,
                    "--concurrency",
                    str(concurrency),
                    "--ready-file",
                    str(ready),
                    "--max-poll",
                    "0.02",
                    "--worker-id",
                    f"bench-{i}",
                ],
                stdout=subprocess.DEVNULL,
            )
        )
    deadline = time.monotonic() + 60
    while not all((tmp / f"ready-{i}").exists() for i in range(n)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise SystemExit("workers did not start")
        time.sleep(0.01)
    return procs


async def drain(url: str, jobs: int) -> float:
    db = Database(url)
    try:
        async with db.write() as conn:
            await enqueue_many(conn, [NewJob("qt.noop", {"i": i}) for i in range(jobs)])
        t0 = time.perf_counter()
        while True:
            async with db.read() as conn:
                busy = await qsql.has_unfinished(conn)
            if not busy:
                return time.perf_counter() - t0
            await asyncio.sleep(0.01)
    finally:
        await db.dispose()


def run(name: str, url: str, workers: int, jobs: int, concurrency: int) -> None:
    engine = create_engine(sync_url(url))
    all_tables().create_all(engine)
    engine.dispose()
    create_test_tables(url)
    with tempfile.TemporaryDirectory() as tmp:
        procs = start_workers(url, workers, concurrency, Path(tmp))
        try:
            seconds = asyncio.run(drain(url, jobs))
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
    print(
        f"{name:<10} workers={workers} concurrency={concurrency} jobs={jobs} "
        f"time={seconds:.2f}s rate={jobs / seconds:,.0f} jobs/s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN)
    args = parser.parse_args()
    print(f"queue_drain {datetime.now(UTC):%Y-%m-%d %H:%M}Z on {machine()}", flush=True)
    if args.engine in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run("sqlite", f"sqlite:///{tmp}/bench.db", 1, args.jobs, args.concurrency)
    if args.engine in ("postgres", "both"):
        name = f"tillbridge_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = args.pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
            run("postgres", url, args.pg_workers, args.jobs, args.concurrency)
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
