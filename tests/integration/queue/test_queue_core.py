"""The job queue on real SQLite and PostgreSQL: enqueue, claim, complete, retry, dead letter."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, text

from tillbridge.queue import (
    JobContext,
    JobRegistry,
    NewJob,
    PermanentFailure,
    RetryLater,
    RetryPolicy,
    Worker,
    enqueue,
    enqueue_many,
    get_job,
)
from tillbridge.queue import sql as qsql
from tillbridge.queue.tables import jobs
from tillbridge.store.db import Database

pytestmark = pytest.mark.anyio


def make_worker(db: Database, registry: JobRegistry, clock: Any, **kw: Any) -> Worker:
    kw.setdefault("concurrency", 4)
    return Worker(
        db,
        registry,
        clock=clock,
        rng=random.Random(7),
        metrics_registry=kw.pop("metrics_registry", CollectorRegistry()),
        **kw,
    )


async def statuses(db: Database) -> dict[int, str]:
    async with db.read() as conn:
        rows = await conn.execute(select(jobs.c.id, jobs.c.status).order_by(jobs.c.id))
        return {int(r.id): str(r.status) for r in rows}


async def test_enqueue_in_a_rolled_back_transaction_leaves_no_job(db: Database, clock: Any) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.write() as conn:
            job_id = await enqueue(conn, "t.noop", {"a": 1}, now=clock())
            assert job_id > 0
            raise Boom
    assert await statuses(db) == {}

    async with db.write() as conn:
        job_id = await enqueue(conn, "t.noop", {"a": 1}, now=clock())
    assert await statuses(db) == {job_id: "todo"}


async def test_dedupe_key_returns_the_existing_job_and_keeps_the_transaction_usable(
    db: Database, clock: Any
) -> None:
    async with db.write() as conn:
        first = await enqueue(conn, "t.noop", {"n": 1}, dedupe_key="order-1:post", now=clock())
    async with db.write() as conn:
        again = await enqueue(conn, "t.noop", {"n": 2}, dedupe_key="order-1:post", now=clock())
        # The caller's transaction is still healthy after the conflict: keep writing in it.
        other = await enqueue(conn, "t.noop", {"n": 3}, now=clock())
    assert again == first
    assert await statuses(db) == {first: "todo", other: "todo"}
    detail = await get_job(db, first)
    assert detail.payload == {"n": 1}


async def test_enqueue_many_keeps_order_and_returns_ids(db: Database, clock: Any) -> None:
    async with db.write() as conn:
        ids = await enqueue_many(
            conn, [NewJob("t.noop", {"i": i}, key="k") for i in range(50)], now=clock()
        )
    assert ids == sorted(ids) and len(set(ids)) == 50
    async with db.read() as conn:
        rows = (await conn.execute(select(jobs.c.id, jobs.c.payload).order_by(jobs.c.id))).all()
    assert [r.payload["i"] for r in rows] == list(range(50))


async def test_naive_run_after_is_refused(db: Database) -> None:
    from datetime import datetime

    async with db.write() as conn:
        with pytest.raises(ValueError, match="timezone-aware"):
            await enqueue(conn, "t.noop", run_after=datetime(2030, 1, 1))


async def test_worker_runs_jobs_and_marks_them_succeeded(db: Database, clock: Any) -> None:
    seen: list[tuple[int, dict[str, Any], int]] = []
    reg = JobRegistry()

    @reg.handler("t.record")
    async def record(ctx: JobContext) -> None:
        seen.append((ctx.job_id, ctx.payload, ctx.attempt))

    async with db.write() as conn:
        ids = [await enqueue(conn, "t.record", {"i": i}, now=clock()) for i in range(10)]
        later = await enqueue(
            conn, "t.record", run_after=clock() + timedelta(minutes=5), now=clock()
        )
        other_kind = await enqueue(conn, "t.unhandled", now=clock())
    await make_worker(db, reg, clock).run_until_idle()

    assert sorted(s[0] for s in seen) == ids
    assert all(s[2] == 1 for s in seen)
    st = await statuses(db)
    assert all(st[i] == "succeeded" for i in ids)
    # Not due yet, and a kind this worker has no handler for: neither is touched.
    assert st[later] == "todo" and st[other_kind] == "todo"

    clock.advance(minutes=5)
    await make_worker(db, reg, clock).run_until_idle()
    assert (await statuses(db))[later] == "succeeded"
    detail = await get_job(db, ids[0])
    assert detail.attempts == 1 and detail.finished_at == clock.now - timedelta(minutes=5)


async def test_failures_retry_with_backoff_then_dead_letter_with_the_last_error(
    db: Database, clock: Any
) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=timedelta(seconds=10), factor=2, jitter=0.0)
    calls: list[int] = []
    reg = JobRegistry()

    @reg.handler("t.flaky", retry=policy)
    async def flaky(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        raise ConnectionError(f"counterpart down (attempt {ctx.attempt})")

    async with db.write() as conn:
        job_id = await enqueue(conn, "t.flaky", now=clock())
    start = clock()

    await make_worker(db, reg, clock).run_until_idle()
    detail = await get_job(db, job_id)
    assert (detail.status, detail.attempts) == ("failed", 1)
    assert detail.run_after == start + timedelta(seconds=10)

    clock.advance(9)  # not yet due: nothing runs
    await make_worker(db, reg, clock).run_until_idle()
    assert calls == [1]

    clock.advance(1)
    await make_worker(db, reg, clock).run_until_idle()
    detail = await get_job(db, job_id)
    assert (detail.status, detail.attempts) == ("failed", 2)
    assert detail.run_after == clock() + timedelta(seconds=20)

    clock.advance(20)
    await make_worker(db, reg, clock).run_until_idle()
    detail = await get_job(db, job_id)
    assert calls == [1, 2, 3]
    assert (detail.status, detail.attempts) == ("dead", 3)
    assert detail.last_error is not None
    assert detail.last_error["type"] == "ConnectionError"
    assert detail.last_error["message"] == "counterpart down (attempt 3)"
    assert "raise ConnectionError" in detail.last_error["traceback"]
    assert [(e.attempt, e.type) for e in detail.errors] == [
        (n, "ConnectionError") for n in (1, 2, 3)
    ]


async def test_backoff_jitter_stays_within_bounds(db: Database, clock: Any) -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=timedelta(seconds=100), jitter=0.5)
    reg = JobRegistry()

    @reg.handler("t.fail", retry=policy)
    async def fail(ctx: JobContext) -> None:
        raise RuntimeError("no")

    async with db.write() as conn:
        ids = [await enqueue(conn, "t.fail", now=clock()) for _ in range(8)]
    await make_worker(db, reg, clock).run_until_idle()
    for job_id in ids:
        d = await get_job(db, job_id)
        assert d.status == "failed"
        assert clock() + timedelta(seconds=50) <= d.run_after <= clock() + timedelta(seconds=100)


async def test_enqueue_max_attempts_overrides_the_kind_policy(db: Database, clock: Any) -> None:
    reg = JobRegistry()

    @reg.handler("t.fail", retry=RetryPolicy(max_attempts=9))
    async def fail(ctx: JobContext) -> None:
        raise RuntimeError("no")

    async with db.write() as conn:
        job_id = await enqueue(conn, "t.fail", max_attempts=1, now=clock())
    await make_worker(db, reg, clock).run_until_idle()
    assert (await get_job(db, job_id)).status == "dead"


async def test_handler_signals_retry_later_and_permanent_failure(db: Database, clock: Any) -> None:
    reg = JobRegistry()
    runs: list[int] = []

    @reg.handler("t.ratelimited", retry=RetryPolicy(max_attempts=1))
    async def ratelimited(ctx: JobContext) -> None:
        runs.append(ctx.attempt)
        if len(runs) == 1:
            raise RetryLater("429 from provider", after=120, count_attempt=False)

    @reg.handler("t.permanent")
    async def permanent(ctx: JobContext) -> None:
        raise PermanentFailure("unknown merchant account")

    async with db.write() as conn:
        limited = await enqueue(conn, "t.ratelimited", now=clock())
        perm = await enqueue(conn, "t.permanent", now=clock())
    await make_worker(db, reg, clock).run_until_idle()

    d = await get_job(db, limited)
    # Honoured Retry-After, and the attempt was given back (max_attempts=1 did not kill it).
    assert (d.status, d.attempts, d.run_after) == ("failed", 0, clock() + timedelta(seconds=120))
    p = await get_job(db, perm)
    assert (p.status, p.attempts) == ("dead", 1)
    assert p.last_error is not None and p.last_error["message"] == "unknown merchant account"
    assert p.last_error["type"] == "tillbridge.errors.PermanentFailure"

    clock.advance(120)
    await make_worker(db, reg, clock).run_until_idle()
    assert (await get_job(db, limited)).status == "succeeded"
    assert runs == [1, 1]


async def test_timeout_per_kind_counts_as_a_failed_attempt(db: Database, clock: Any) -> None:
    import asyncio

    reg = JobRegistry()

    @reg.handler("t.hangs", timeout=0.05, retry=RetryPolicy(max_attempts=1))
    async def hangs(ctx: JobContext) -> None:
        await asyncio.Event().wait()

    async with db.write() as conn:
        job_id = await enqueue(conn, "t.hangs", now=clock())
    await make_worker(db, reg, clock).run_until_idle()
    d = await get_job(db, job_id)
    assert d.status == "dead" and d.last_error is not None
    assert d.last_error["type"] == "TimeoutError"


async def test_complete_in_commits_the_effect_and_the_completion_together(
    db: Database, clock: Any
) -> None:
    await _create_effects(db)
    reg = JobRegistry()

    @reg.handler("t.effect", retry=RetryPolicy(max_attempts=2, base_delay=timedelta(0)))
    async def effect(ctx: JobContext) -> None:
        async with ctx.transaction() as conn:
            await conn.execute(
                text("INSERT INTO qtest_effects (job_id) VALUES (:j)"), {"j": ctx.job_id}
            )
            if ctx.attempt == 1:
                raise RuntimeError("crash before commit")  # effect rolls back with the completion

    async with db.write() as conn:
        job_id = await enqueue(conn, "t.effect", now=clock())
    await make_worker(db, reg, clock).run_until_idle()
    d = await get_job(db, job_id)
    assert (d.status, d.attempts) == ("succeeded", 2)
    async with db.read() as conn:
        n = (await conn.execute(text("SELECT count(*) FROM qtest_effects"))).scalar_one()
    assert n == 1


async def _create_effects(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS qtest_effects"))
        await conn.execute(text("CREATE TABLE qtest_effects (job_id BIGINT PRIMARY KEY)"))


async def test_a_stale_worker_cannot_complete_a_reclaimed_job(db: Database, clock: Any) -> None:
    async with db.write() as conn:
        job_id = await enqueue(conn, "t.x", now=clock())
    async with db.write() as conn:
        [old] = await qsql.claim(
            conn,
            worker_id="old",
            queues=["default"],
            kinds=["t.x"],
            limit=5,
            now=clock(),
            lease_until=clock() + timedelta(seconds=30),
        )
    clock.advance(31)
    async with db.write() as conn:
        reaped = await qsql.reap(conn, now=clock(), error={"type": "LeaseExpired", "message": "x"})
        assert reaped == [(job_id, 1)]
        [new] = await qsql.claim(
            conn,
            worker_id="new",
            queues=["default"],
            kinds=["t.x"],
            limit=5,
            now=clock(),
            lease_until=clock() + timedelta(seconds=30),
        )
    assert new.attempts == 2
    async with db.write() as conn:
        done = await qsql.complete(
            conn, worker_id="old", pairs=[(old.id, old.attempts)], now=clock()
        )
        assert done == set()
        done = await qsql.complete(
            conn, worker_id="new", pairs=[(new.id, new.attempts)], now=clock()
        )
        assert done == {job_id}
    async with db.read() as conn:
        n = (await conn.execute(select(func.count()).select_from(jobs))).scalar_one()
    assert n == 1
