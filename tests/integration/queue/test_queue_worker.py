"""Worker behaviour on both engines: per-key order, leases, operators, periodic jobs, shutdown."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from tillbridge.queue import (
    JobContext,
    JobNotFound,
    JobRegistry,
    JobStateError,
    NewJob,
    QueueMetrics,
    RetryPolicy,
    Worker,
    cancel_job,
    enqueue,
    enqueue_many,
    get_job,
    list_jobs,
    retry_job,
    schedule_due,
)
from tillbridge.queue import sql as qsql
from tillbridge.queue.tables import jobs
from tillbridge.store.db import Database

pytestmark = pytest.mark.anyio


def make_worker(db: Database, registry: JobRegistry, clock: Any, **kw: Any) -> Worker:
    kw.setdefault("concurrency", 8)
    kw.setdefault("metrics_registry", CollectorRegistry())
    return Worker(db, registry, clock=clock, rng=random.Random(3), **kw)


async def claim(
    db: Database, clock: Any, worker: str, kinds: list[str], limit: int = 50
) -> list[int]:
    async with db.write() as conn:
        got = await qsql.claim(
            conn,
            worker_id=worker,
            queues=["default"],
            kinds=kinds,
            limit=limit,
            now=clock(),
            lease_until=clock() + timedelta(seconds=30),
        )
    return [j.id for j in got]


async def test_claim_takes_only_the_head_of_each_key(db: Database, clock: Any) -> None:
    async with db.write() as conn:
        a1, a2, b1, free1, a3, free2 = await enqueue_many(
            conn,
            [
                NewJob("t.x", key="order:A"),
                NewJob("t.x", key="order:A"),
                NewJob("t.x", key="order:B"),
                NewJob("t.x"),
                NewJob("t.x", key="order:A"),
                NewJob("t.x"),
            ],
            now=clock(),
        )
    assert await claim(db, clock, "w1", ["t.x"]) == [a1, b1, free1, free2]
    # A second claimer gets nothing: the heads are running, the rest wait behind them.
    assert await claim(db, clock, "w2", ["t.x"]) == []
    async with db.write() as conn:
        await qsql.complete(conn, worker_id="w1", pairs=[(a1, 1)], now=clock())
    assert await claim(db, clock, "w2", ["t.x"]) == [a2]
    async with db.write() as conn:
        await qsql.complete(conn, worker_id="w2", pairs=[(a2, 1)], now=clock())
    assert await claim(db, clock, "w2", ["t.x"]) == [a3]


async def test_a_retry_pending_job_blocks_later_jobs_of_its_key(db: Database, clock: Any) -> None:
    async with db.write() as conn:
        first = await enqueue(conn, "t.x", key="k", now=clock())
        second = await enqueue(conn, "t.x", key="k", now=clock())
    assert await claim(db, clock, "w", ["t.x"]) == [first]
    async with db.write() as conn:
        await qsql.fail(
            conn,
            worker_id="w",
            job_id=first,
            attempt=1,
            dead=False,
            run_after=clock() + timedelta(minutes=1),
            error={"type": "E", "message": "m"},
            give_back_attempt=False,
            now=clock(),
        )
    assert await claim(db, clock, "w", ["t.x"]) == []
    clock.advance(minutes=1)
    assert await claim(db, clock, "w", ["t.x"]) == [first]
    assert second not in await claim(db, clock, "w", ["t.x"])


async def test_the_database_refuses_two_running_jobs_of_one_key(db: Database, clock: Any) -> None:
    async with db.write() as conn:
        await enqueue(conn, "t.x", key="k", now=clock())
        second = await enqueue(conn, "t.x", key="k", now=clock())
    await claim(db, clock, "w", ["t.x"])
    with pytest.raises(IntegrityError):
        async with db.write() as conn:
            await conn.execute(update(jobs).where(jobs.c.id == second).values(status="running"))


async def test_jobs_of_a_key_run_one_at_a_time_in_enqueue_order(db: Database, clock: Any) -> None:
    order: dict[str, list[int]] = {}
    active: set[str] = set()
    overlaps: list[str] = []
    reg = JobRegistry()

    @reg.handler("t.keyed")
    async def keyed(ctx: JobContext) -> None:
        assert ctx.key is not None
        if ctx.key in active:
            overlaps.append(ctx.key)
        active.add(ctx.key)
        order.setdefault(ctx.key, []).append(ctx.payload["n"])
        await asyncio.sleep(0)  # yield so other jobs of other keys interleave
        active.discard(ctx.key)

    async with db.write() as conn:
        await enqueue_many(
            conn,
            [NewJob("t.keyed", {"n": n}, key=f"k{n % 3}") for n in range(60)],
            now=clock(),
        )
    await make_worker(db, reg, clock, concurrency=8).run_until_idle()
    assert overlaps == []
    assert {k: v for k, v in order.items()} == {
        f"k{r}": [n for n in range(60) if n % 3 == r] for r in range(3)
    }


async def test_an_expired_lease_makes_the_job_claimable_and_counts_the_attempt(
    db: Database, clock: Any
) -> None:
    ran: list[int] = []
    reg = JobRegistry()

    @reg.handler("t.x")
    async def handler(ctx: JobContext) -> None:
        ran.append(ctx.attempt)

    async with db.write() as conn:
        job_id = await enqueue(conn, "t.x", key="k", now=clock())
    assert await claim(db, clock, "dead-worker", ["t.x"]) == [job_id]

    await make_worker(db, reg, clock).run_until_idle()  # lease still valid: nothing to do
    assert ran == []

    clock.advance(31)
    await make_worker(db, reg, clock).run_until_idle()
    assert ran == [2]
    d = await get_job(db, job_id)
    assert (d.status, d.attempts) == ("succeeded", 2)
    assert [e.type for e in d.errors] == ["LeaseExpired"]


async def test_a_lease_lost_on_the_last_attempt_dead_letters_without_running(
    db: Database, clock: Any
) -> None:
    ran: list[int] = []
    reg = JobRegistry()

    @reg.handler("t.x", retry=RetryPolicy(max_attempts=1))
    async def handler(ctx: JobContext) -> None:
        ran.append(ctx.attempt)

    async with db.write() as conn:
        job_id = await enqueue(conn, "t.x", now=clock())
    await claim(db, clock, "dead-worker", ["t.x"])
    clock.advance(60)
    await make_worker(db, reg, clock).run_until_idle()
    d = await get_job(db, job_id)
    assert ran == [] and d.status == "dead"
    assert d.last_error is not None and d.last_error["type"] == "LeaseExpired"


async def test_heartbeat_keeps_a_long_job_leased(db: Database, clock: Any) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    reg = JobRegistry()

    @reg.handler("t.long")
    async def long(ctx: JobContext) -> None:
        started.set()
        await release.wait()

    async with db.write() as conn:
        job_id = await enqueue(conn, "t.long", now=clock())
    worker = make_worker(db, reg, clock, lease=timedelta(seconds=30), heartbeat_interval=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await started.wait()
    first = (await get_job(db, job_id)).locked_until
    assert first == clock() + timedelta(seconds=30)
    clock.advance(20)
    # The worker's heartbeat loop pushes the lease to (fake) now + 30 s; wait for it to show.
    want = first + timedelta(seconds=20)
    for _ in range(2000):
        if (await get_job(db, job_id)).locked_until == want:
            break
        await asyncio.sleep(0.005)
    assert (await get_job(db, job_id)).locked_until == want
    release.set()
    stop.set()
    await task
    assert (await get_job(db, job_id)).status == "succeeded"


async def test_graceful_stop_finishes_quick_jobs_and_hands_back_stuck_ones(
    db: Database, clock: Any
) -> None:
    stuck_started = asyncio.Event()
    reg = JobRegistry()

    @reg.handler("t.stuck")
    async def stuck(ctx: JobContext) -> None:
        stuck_started.set()
        await asyncio.Event().wait()

    @reg.handler("t.quick")
    async def quick(ctx: JobContext) -> None:
        return None

    async with db.write() as conn:
        stuck_id = await enqueue(conn, "t.stuck", now=clock())
        quick_id = await enqueue(conn, "t.quick", now=clock())
    worker = make_worker(db, reg, clock, shutdown_timeout=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await stuck_started.wait()
    stop.set()
    await task
    s = await get_job(db, stuck_id)
    assert (s.status, s.attempts) == ("todo", 0)  # handed back, attempt given back
    assert (await get_job(db, quick_id)).status == "succeeded"


async def test_operators_list_show_cancel_and_retry(db: Database, clock: Any) -> None:
    async with db.write() as conn:
        ids = [
            await enqueue(conn, "t.op", {"n": n}, key=f"k{n % 2}", now=clock()) for n in range(5)
        ]
    page = await list_jobs(db, limit=2)
    assert [j.id for j in page.items] == [ids[4], ids[3]]
    page2 = await list_jobs(db, limit=2, cursor=page.next_cursor)
    assert [j.id for j in page2.items] == [ids[2], ids[1]]
    last = await list_jobs(db, limit=2, cursor=page2.next_cursor)
    assert [j.id for j in last.items] == [ids[0]] and last.next_cursor is None
    assert [j.id for j in (await list_jobs(db, key="k1")).items] == [ids[3], ids[1]]

    await cancel_job(db, ids[0], now=clock())
    assert (await get_job(db, ids[0])).status == "cancelled"
    with pytest.raises(JobStateError, match="only todo or failed"):
        await cancel_job(db, ids[0])
    assert [j.id for j in (await list_jobs(db, status="cancelled")).items] == [ids[0]]

    await claim(db, clock, "w", ["t.op"])  # ids[1] (k1 head) and ids[2] (k0 head, ids[0] gone)
    with pytest.raises(JobStateError, match="running"):
        await cancel_job(db, ids[1])
    with pytest.raises(JobStateError, match="only dead or cancelled"):
        await retry_job(db, ids[1])

    await retry_job(db, ids[0], now=clock())
    d = await get_job(db, ids[0])
    assert (d.status, d.attempts, d.finished_at) == ("todo", 0, None)

    with pytest.raises(JobNotFound):
        await get_job(db, 999_999)
    with pytest.raises(JobNotFound):
        await cancel_job(db, 999_999)
    with pytest.raises(JobNotFound):
        await retry_job(db, 999_999)
    with pytest.raises(ValueError, match="unknown status"):
        await list_jobs(db, status="nope")


async def test_a_retried_old_job_waits_for_the_running_job_of_its_key(
    db: Database, clock: Any
) -> None:
    async with db.write() as conn:
        old = await enqueue(conn, "t.x", key="k", now=clock())
        new = await enqueue(conn, "t.x", key="k", now=clock())
    await cancel_job(db, old, now=clock())
    assert await claim(db, clock, "w", ["t.x"]) == [new]
    await retry_job(db, old, now=clock())
    assert await claim(db, clock, "w", ["t.x"]) == []  # no IntegrityError, just waits
    async with db.write() as conn:
        await qsql.complete(conn, worker_id="w", pairs=[(new, 1)], now=clock())
    assert await claim(db, clock, "w", ["t.x"]) == [old]


async def test_periodic_jobs_are_enqueued_once_per_period_by_any_number_of_schedulers(
    db: Database, clock: Any
) -> None:
    reg = JobRegistry()
    reg.periodic("t.tick", every=timedelta(minutes=5), payload={"p": 1})
    reg.periodic("t.daily", every=timedelta(days=1), offset=timedelta(hours=2))

    other = Database(db.url)  # a second scheduler with its own connections
    try:
        first = await schedule_due(db, reg.periodics, clock())
        again = await asyncio.gather(
            schedule_due(db, reg.periodics, clock()), schedule_due(other, reg.periodics, clock())
        )
    finally:
        await other.dispose()
    assert again == [first, first]
    async with db.read() as conn:
        rows = (await conn.execute(select(jobs.c.kind, jobs.c.run_after, jobs.c.dedupe_key))).all()
    assert len(rows) == 2
    tick = next(r for r in rows if r.kind == "t.tick")
    assert tick.run_after <= clock() < tick.run_after + timedelta(minutes=5)
    assert tick.run_after.minute % 5 == 0 and tick.run_after.second == 0

    clock.advance(minutes=5)
    second = await schedule_due(db, reg.periodics, clock())
    assert second[0] == first[0]  # daily: same period
    assert second[1] != first[1]  # tick: a new period, a new job


async def test_metrics_count_by_kind_and_survive_a_second_registration(
    db: Database, clock: Any
) -> None:
    registry = CollectorRegistry()
    QueueMetrics(registry)  # registering twice on one registry must not fail
    reg = JobRegistry()

    @reg.handler("t.ok")
    async def ok(ctx: JobContext) -> None:
        return None

    @reg.handler("t.bad", retry=RetryPolicy(max_attempts=1))
    async def bad(ctx: JobContext) -> None:
        raise RuntimeError("x")

    async with db.write() as conn:
        for _ in range(3):
            await enqueue(conn, "t.ok", now=clock())
        await enqueue(conn, "t.bad", now=clock())
    await make_worker(db, reg, clock, metrics_registry=registry).run_until_idle()

    def value(name: str, kind: str) -> float | None:
        return registry.get_sample_value(name, {"kind": kind})

    assert value("tillbridge_jobs_claimed_total", "t.ok") == 3
    assert value("tillbridge_jobs_succeeded_total", "t.ok") == 3
    assert value("tillbridge_jobs_dead_total", "t.bad") == 1
