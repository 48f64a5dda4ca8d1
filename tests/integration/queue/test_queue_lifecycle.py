"""Hypothesis state machine: the job life cycle on a real SQLite database against a model.

Random sequences of enqueue, claim (two workers), complete, fail, retry-later, reap after lease
expiry, operator cancel and retry, and clock moves. After every step the database must agree
with a plain-Python model of the rules (statuses, attempts, which jobs a claim returns, in which
order), and no key may have two running jobs.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import create_engine, select

from tillbridge.queue import JobNotFound, JobStateError, cancel_job, enqueue, retry_job
from tillbridge.queue import sql as qsql
from tillbridge.queue.tables import jobs
from tillbridge.store.db import Database
from tillbridge.store.schema import all_tables

LEASE = timedelta(seconds=30)
KEYS = [None, "k1", "k2"]
WORKERS = ["w1", "w2"]


@dataclass
class Model:
    key: str | None
    status: str = "todo"
    attempts: int = 0
    run_after: datetime | None = None
    owner: str | None = None
    locked_until: datetime | None = None


class JobLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        url = f"sqlite:///{Path(self.tmp.name) / 'q.db'}"
        engine = create_engine(url)
        all_tables().create_all(engine)
        engine.dispose()
        self.loop = asyncio.new_event_loop()
        self.db = Database(url)
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.model: dict[int, Model] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.db.dispose())
        self.loop.close()
        self.tmp.cleanup()

    # ------------------------------------------------------------------ model rules

    def expected_claim(self, limit: int) -> list[int]:
        active = {i for i, j in self.model.items() if j.status in ("todo", "failed", "running")}
        out: list[int] = []
        for job_id in sorted(self.model):
            j = self.model[job_id]
            if j.status not in ("todo", "failed") or (j.run_after or self.now) > self.now:
                continue
            if j.key is not None:
                if any(o.key == j.key and o.status == "running" for o in self.model.values()):
                    continue
                if min(i for i in active if self.model[i].key == j.key) != job_id:
                    continue
            out.append(job_id)
            if len(out) == limit:
                break
        return out

    def running(self) -> list[int]:
        return sorted(i for i, j in self.model.items() if j.status == "running")

    # ---------------------------------------------------------------------- steps

    @rule(key=st.sampled_from(KEYS), delay=st.sampled_from([0, 0, 10]))
    def enqueue_job(self, key: str | None, delay: int) -> None:
        async def go() -> int:
            async with self.db.write() as conn:
                return await enqueue(
                    conn,
                    "t.k",
                    key=key,
                    run_after=self.now + timedelta(seconds=delay),
                    now=self.now,
                )

        job_id = self.run(go())
        self.model[job_id] = Model(key, run_after=self.now + timedelta(seconds=delay))

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 4))
    def claim(self, worker: str, limit: int) -> None:
        expected = self.expected_claim(limit)

        async def go() -> list[qsql.ClaimedJob]:
            async with self.db.write() as conn:
                return await qsql.claim(
                    conn,
                    worker_id=worker,
                    queues=["default"],
                    kinds=["t.k"],
                    limit=limit,
                    now=self.now,
                    lease_until=self.now + LEASE,
                )

        got = self.run(go())
        assert [j.id for j in got] == expected
        for j in got:
            m = self.model[j.id]
            m.status, m.attempts, m.owner = "running", m.attempts + 1, worker
            m.locked_until = self.now + LEASE
            assert j.attempts == m.attempts

    @precondition(lambda self: self.running())
    @rule(data=st.data(), right_worker=st.booleans())
    def complete(self, data: st.DataObject, right_worker: bool) -> None:
        job_id = data.draw(st.sampled_from(self.running()))
        m = self.model[job_id]
        worker = m.owner if right_worker else "intruder"
        assert worker is not None

        async def go() -> set[int]:
            async with self.db.write() as conn:
                return await qsql.complete(
                    conn, worker_id=worker, pairs=[(job_id, m.attempts)], now=self.now
                )

        changed = self.run(go())
        assert changed == ({job_id} if right_worker else set())
        if right_worker:
            m.status, m.locked_until = "succeeded", None

    @precondition(lambda self: self.running())
    @rule(data=st.data(), dead=st.booleans(), delay=st.sampled_from([0, 5, 60]))
    def fail(self, data: st.DataObject, dead: bool, delay: int) -> None:
        job_id = data.draw(st.sampled_from(self.running()))
        m = self.model[job_id]
        assert m.owner is not None
        owner = m.owner

        async def go() -> bool:
            async with self.db.write() as conn:
                return await qsql.fail(
                    conn,
                    worker_id=owner,
                    job_id=job_id,
                    attempt=m.attempts,
                    dead=dead,
                    run_after=self.now + timedelta(seconds=delay),
                    error={"type": "E", "message": "boom"},
                    give_back_attempt=False,
                    now=self.now,
                )

        assert self.run(go())
        m.locked_until = None
        if dead:
            m.status = "dead"
        else:
            m.status, m.run_after = "failed", self.now + timedelta(seconds=delay)

    @rule(seconds=st.sampled_from([1, 10, 31]))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def reap(self) -> None:
        expired = sorted(
            i
            for i, j in self.model.items()
            if j.status == "running" and j.locked_until is not None and j.locked_until < self.now
        )

        async def go() -> list[tuple[int, int]]:
            async with self.db.write() as conn:
                return await qsql.reap(
                    conn, now=self.now, error={"type": "LeaseExpired", "message": "x"}
                )

        assert [i for i, _ in self.run(go())] == expired
        for i in expired:
            m = self.model[i]
            m.status, m.run_after, m.locked_until = "failed", self.now, None

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.model)))
        m = self.model[job_id]
        allowed = m.status in ("todo", "failed")
        try:
            self.run(cancel_job(self.db, job_id, now=self.now))
        except JobStateError:
            assert not allowed
        else:
            assert allowed
            m.status = "cancelled"

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def operator_retry(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.model)))
        m = self.model[job_id]
        allowed = m.status in ("dead", "cancelled")
        try:
            self.run(retry_job(self.db, job_id, now=self.now))
        except JobStateError:
            assert not allowed
        else:
            assert allowed
            m.status, m.attempts, m.run_after = "todo", 0, self.now

    @rule()
    def unknown_job(self) -> None:
        with pytest.raises(JobNotFound):
            self.run(cancel_job(self.db, 10**9))

    # ---------------------------------------------------------------------- checks

    @invariant()
    def database_matches_model(self) -> None:
        async def go() -> list[Any]:
            async with self.db.read() as conn:
                stmt = select(jobs.c.id, jobs.c.status, jobs.c.attempts, jobs.c.key)
                return list(await conn.execute(stmt))

        rows = self.run(go())
        assert {r.id: (r.status, r.attempts) for r in rows} == {
            i: (m.status, m.attempts) for i, m in self.model.items()
        }
        running_keys = [r.key for r in rows if r.status == "running" and r.key is not None]
        assert len(running_keys) == len(set(running_keys))


JobLifecycle.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_job_lifecycle = JobLifecycle.TestCase
