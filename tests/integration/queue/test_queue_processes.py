"""Real worker processes: kill -9 in the middle of a job, and four workers on one PostgreSQL.

Workers are ``python -m tillbridge.queue._testworker`` processes (see that module for what the
handlers record). Tests wait on conditions in the database, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from tillbridge.queue import NewJob, enqueue_many
from tillbridge.queue._testworker import (
    create_test_tables,
    qt_counts,
    qt_effects,
    qt_executions,
    qt_ready,
    qt_violations,
)
from tillbridge.queue.tables import job_errors, jobs
from tillbridge.store.db import Database, sync_url

pytestmark = pytest.mark.slow


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    create_test_tables(db_url)
    eng = create_engine(sync_url(db_url))
    yield eng
    eng.dispose()


def enqueue_all(url: str, new_jobs: list[NewJob]) -> list[int]:
    async def run() -> list[int]:
        db = Database(url)
        try:
            async with db.write() as conn:
                return await enqueue_many(conn, new_jobs)
        finally:
            await db.dispose()

    return asyncio.run(run())


class Workers:
    """Worker processes started for one test; whatever is still running is killed at the end."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *, lease: float, concurrency: int = 8) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tillbridge.queue._testworker",
                self.url,
                "--lease",
                str(lease),
                "--concurrency",
                str(concurrency),
                "--worker-id",
                name,
                "--max-poll",
                "0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            assert proc.wait(timeout=60) in (0, -signal.SIGKILL), self.logs()

    def logs(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in sorted(self.tmp.glob("*.log")))

    def kill_leftovers(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(db_url, tmp_path)
    yield w
    w.kill_leftovers()


def wait_until(
    check: Callable[[], bool], what: str, workers: Workers, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for proc in workers.procs:
            if proc.returncode is None and proc.poll() is not None and proc.returncode != -9:
                pytest.fail(
                    f"worker exited with {proc.returncode} waiting for {what}\n{workers.logs()}"
                )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{workers.logs()}")
        time.sleep(0.05)


def scalar(engine: Engine, stmt: object) -> int:
    with engine.connect() as c:
        return int(c.execute(stmt).scalar_one())  # type: ignore[call-overload]


def unfinished(engine: Engine) -> int:
    return scalar(
        engine,
        select(func.count())
        .select_from(jobs)
        .where(jobs.c.status.in_(["todo", "failed", "running"])),
    )


def test_kill_9_mid_job_every_job_ends_succeeded_and_db_effects_happen_once(
    db_url: str, engine: Engine, workers: Workers
) -> None:
    new = [NewJob("qt.block", key="order:1")]
    new += [NewJob("qt.effect", {"n": n}, key="order:1") for n in range(5)]
    new += [NewJob("qt.effect", {"n": n}) for n in range(30)]
    new += [NewJob("qt.noop", {"n": n}) for n in range(30)]
    ids = enqueue_all(db_url, new)
    block_id = ids[0]
    effect_ids = set(ids[:36])

    first = workers.start("victim", lease=2, concurrency=4)
    wait_until(
        lambda: scalar(engine, select(func.count()).select_from(qt_ready)) == 1,
        "the blocking job to start",
        workers,
    )
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL

    workers.start("rescuer", lease=2, concurrency=4)
    wait_until(lambda: unfinished(engine) == 0, "all jobs to finish", workers)
    workers.stop_all()

    with engine.connect() as c:
        statuses = dict(c.execute(select(jobs.c.id, jobs.c.status)).all())
        effects = [r.job_id for r in c.execute(select(qt_effects.c.job_id))]
        block = c.execute(select(jobs).where(jobs.c.id == block_id)).one()
        errors = [
            r.type
            for r in c.execute(select(job_errors.c.type).where(job_errors.c.job_id == block_id))
        ]
        order = [
            r.job_id
            for r in c.execute(
                select(qt_executions.c.job_id)
                .where(qt_executions.c.key == "order:1")
                .order_by(qt_executions.c.id)
            )
        ]
        violations = c.execute(select(func.count()).select_from(qt_violations)).scalar_one()
    assert set(statuses.values()) == {"succeeded"} and set(statuses) == set(ids)
    assert sorted(effects) == sorted(effect_ids)  # primary key: at most once; all present
    assert block.attempts == 2 and block.locked_by == "rescuer"
    assert errors == ["LeaseExpired"]
    # The blocked key held back its later jobs until the rescue, then ran them in order.
    assert order == [block_id, block_id, *ids[1:6]]
    assert violations == 0


@pytest.mark.postgres
def test_four_workers_on_postgresql_run_10000_jobs_once_each_with_keys_serialized(
    pg_database_url: str, tmp_path: Path
) -> None:
    # Commits need not reach the disk here: the server never crashes in this test, and
    # synchronous_commit=off changes nothing about what other sessions see or when.
    url = pg_database_url + "?options=-csynchronous_commit%3Doff"
    eng = create_engine(sync_url(url))
    with eng.begin() as c:
        c.execute(text("TRUNCATE jobs, job_errors RESTART IDENTITY CASCADE"))
    create_test_tables(url)
    # 3,000 jobs spread over 101 keys (about 30 deep each), the others keyless.
    new = [
        NewJob("qt.effect", {"n": n}, key=f"order:{n % 101}" if n % 10 < 3 else None)
        for n in range(10_000)
    ]
    enqueue_all(url, new)
    w = Workers(url, tmp_path)
    try:
        for i in range(4):
            w.start(f"w{i}", lease=30, concurrency=8)
        wait_until(lambda: unfinished(eng) == 0, "10,000 jobs to finish", w, timeout=300)
        w.stop_all()
    finally:
        w.kill_leftovers()

    with eng.connect() as c:
        summary = c.execute(
            select(jobs.c.status, func.count(), func.max(jobs.c.attempts)).group_by(jobs.c.status)
        ).all()
        invocations = c.execute(select(func.sum(qt_counts.c.invocations))).scalar_one()
        executions = c.execute(select(func.count()).select_from(qt_executions)).scalar_one()
        effects = c.execute(select(func.count()).select_from(qt_effects)).scalar_one()
        violations = c.execute(select(func.count()).select_from(qt_violations)).scalar_one()
        error_count = c.execute(select(func.count()).select_from(job_errors)).scalar_one()
        per_worker = dict(
            c.execute(select(qt_effects.c.worker, func.count()).group_by(qt_effects.c.worker)).all()
        )
        errors = c.execute(
            select(job_errors.c.job_id, job_errors.c.attempt, job_errors.c.message).limit(10)
        ).all()
        runs = c.execute(
            select(qt_executions.c.key, qt_executions.c.job_id)
            .where(qt_executions.c.key.is_not(None))
            .order_by(qt_executions.c.id)
        ).all()
    eng.dispose()
    assert [tuple(r) for r in summary] == [("succeeded", 10_000, 1)], (errors, w.logs())
    assert invocations == 10_000  # handlers called once per job, counted in each process
    assert executions == 10_000  # no job ran twice
    assert effects == 10_000
    assert violations == 0  # no two jobs of one key ever held the key together
    assert error_count == 0
    assert len(per_worker) == 4, per_worker  # every process took part
    by_key: dict[str, list[int]] = defaultdict(list)
    for key, job_id in runs:
        by_key[key].append(job_id)
    assert len(by_key) == 101 and sum(len(v) for v in by_key.values()) == 3_000
    assert all(seq == sorted(seq) for seq in by_key.values())  # enqueue order within each key
