"""Putting jobs in the queue: inside the caller's transaction (transactional outbox)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.clock import utcnow
from tillbridge.queue import sql
from tillbridge.queue.policy import Periodic
from tillbridge.queue.tables import TODO

if TYPE_CHECKING:
    from tillbridge.store.db import Database


def _row(
    kind: str,
    payload: Mapping[str, Any] | None,
    *,
    key: str | None,
    run_after: datetime | None,
    max_attempts: int | None,
    dedupe_key: str | None,
    queue: str,
    now: datetime,
) -> dict[str, Any]:
    if not kind or len(kind) > 128:
        raise ValueError("a job kind is 1 to 128 characters")
    if not queue or len(queue) > 64:
        raise ValueError("a queue name is 1 to 64 characters")
    if key is not None and not 0 < len(key) <= 255:
        raise ValueError("a job key is 1 to 255 characters")
    if dedupe_key is not None and not 0 < len(dedupe_key) <= 255:
        raise ValueError("a dedupe key is 1 to 255 characters")
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if run_after is not None and run_after.tzinfo is None:
        raise ValueError("run_after must be timezone-aware")
    return {
        "queue": queue,
        "kind": kind,
        "key": key,
        "payload": dict(payload or {}),
        "status": TODO,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_after": run_after or now,
        "dedupe_key": dedupe_key,
        "created_at": now,
        "updated_at": now,
    }


async def enqueue(
    conn: AsyncConnection,
    kind: str,
    payload: Mapping[str, Any] | None = None,
    *,
    key: str | None = None,
    run_after: datetime | None = None,
    max_attempts: int | None = None,
    dedupe_key: str | None = None,
    queue: str = "default",
    now: datetime | None = None,
) -> int:
    """Add a job in the caller's transaction and return its id.

    The job exists if and only if the caller's transaction commits: call this with the connection
    of the write transaction that makes the business change (``async with db.write() as conn``).
    It never commits, rolls back or opens a transaction of its own.

    * ``payload`` must be JSON-serialisable; keep it small (ids, not documents).
    * ``key`` serializes jobs: at most one job per key runs at a time, in enqueue order.
    * ``run_after`` (aware) delays the job; ``max_attempts`` overrides the kind's retry policy.
    * ``dedupe_key`` is idempotent: if a job with this key already exists (in any state, ever),
      no second job is created and the existing job's id is returned. Safe inside the caller's
      transaction on both engines (no failing statement).
    * ``now`` is the clock reading to stamp the job with (default: the UTC wall clock).
    """
    row = _row(
        kind,
        payload,
        key=key,
        run_after=run_after,
        max_attempts=max_attempts,
        dedupe_key=dedupe_key,
        queue=queue,
        now=now or utcnow(),
    )
    return await sql.insert_job(conn, row)


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job for :func:`enqueue_many` (same meaning as :func:`enqueue`'s arguments)."""

    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    run_after: datetime | None = None
    max_attempts: int | None = None
    queue: str = "default"


async def enqueue_many(
    conn: AsyncConnection, new_jobs: Iterable[NewJob], *, now: datetime | None = None
) -> list[int]:
    """Add many jobs in one batched insert in the caller's transaction; ids in input order.

    No dedupe keys here (use :func:`enqueue` for those). Jobs sharing a key run in list order.
    """
    stamp = now or utcnow()
    rows = [
        _row(
            j.kind,
            j.payload,
            key=j.key,
            run_after=j.run_after,
            max_attempts=j.max_attempts,
            dedupe_key=None,
            queue=j.queue,
            now=stamp,
        )
        for j in new_jobs
    ]
    return await sql.insert_jobs(conn, rows)


async def enqueue_periodic(conn: AsyncConnection, periodic: Periodic, now: datetime) -> int:
    """Enqueue the job of ``periodic`` for the period containing ``now``; idempotent.

    Any number of schedulers may call this for the same period: the dedupe key (kind + period
    start) lets exactly one job exist per period.
    """
    start = periodic.period_start(now)
    return await enqueue(
        conn,
        periodic.kind,
        periodic.payload,
        key=periodic.key,
        run_after=start,
        dedupe_key=periodic.dedupe_key(start),
        queue=periodic.queue,
        now=now,
    )


async def schedule_due(db: Database, periodics: Iterable[Periodic], now: datetime) -> list[int]:
    """One scheduler tick: make sure every periodic job of the current period exists."""
    ids: list[int] = []
    items = list(periodics)
    if not items:
        return ids
    async with db.write() as conn:
        for periodic in items:
            ids.append(await enqueue_periodic(conn, periodic, now))
    return ids
