"""Every SQL statement of the job queue, in one place, PostgreSQL and SQLite side by side.

All functions take the caller's :class:`~sqlalchemy.ext.asyncio.AsyncConnection`, already inside a
transaction: they never begin, commit or roll back. Writes must run in a write transaction
(``Database.write()``: ``BEGIN IMMEDIATE`` on SQLite).

Whether a statement changed a row is read from ``RETURNING``, never from the driver's rowcount
(not reliable for every statement kind with every driver).

Concurrency model:

* PostgreSQL, several workers: row-claiming statements select their rows in a CTE with
  ``FOR UPDATE SKIP LOCKED`` (ordered by id), then update them. A claimer never waits for another
  and two claimers never take the same row. A row changed by a commit after the statement's
  snapshot is re-checked by PostgreSQL against the ``WHERE`` (READ COMMITTED re-evaluation), so a
  job claimed or finished meanwhile is skipped.
* SQLite: one writer at a time (``BEGIN IMMEDIATE``), so plain ``UPDATE ... RETURNING`` is exact.
* Every update of a running job is fenced by ``(id, attempts, locked_by, status='running')``: a
  worker whose lease expired and whose job was reclaimed can no longer complete or fail it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    String,
    and_,
    bindparam,
    exists,
    insert,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.queue.tables import (
    CANCELLED,
    DEAD,
    FAILED,
    READY,
    RUNNING,
    SUCCEEDED,
    TODO,
    job_errors,
    jobs,
    status_in,
)
from tillbridge.store.keyset import Keyset, Page
from tillbridge.store.sql import insert_or_ignore
from tillbridge.store.types import UTCDateTime


def _lit(status: str) -> ColumnElement[str]:
    return literal_column(f"'{status}'")


def _is_pg(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker now holds the lease of; ``attempts`` is the current attempt (1-based)."""

    id: int
    queue: str
    kind: str
    key: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int | None
    last_error: dict[str, Any] | None


# --------------------------------------------------------------------------------------- enqueue


_INSERT_JOB = insert(jobs).returning(jobs.c.id)
_INSERT_JOB_DEDUPE = insert_or_ignore(
    jobs, index_elements=[jobs.c.dedupe_key], returning=[jobs.c.id]
)


async def insert_job(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    """Insert one job; with a ``dedupe_key`` already taken, return the existing job's id.

    ``ON CONFLICT DO NOTHING`` (both engines) instead of catching an IntegrityError: a failed
    statement would abort the caller's PostgreSQL transaction, and the job is enqueued inside
    the caller's business transaction. On PostgreSQL a concurrent uncommitted insert of the same
    key makes this statement wait for it; the follow-up SELECT then sees the committed row.
    """
    dedupe_key = values.get("dedupe_key")
    if dedupe_key is None:
        # A prebuilt statement with a parameter dict: building ``.values(...)`` per call cost
        # more CPU than the INSERT itself on the API's hot path.
        result = await conn.execute(_INSERT_JOB, dict(values))
        return int(result.scalar_one())
    new_id = (await conn.execute(_INSERT_JOB_DEDUPE.on(conn), dict(values))).scalar_one_or_none()
    if new_id is not None:
        return int(new_id)
    existing = await conn.execute(select(jobs.c.id).where(jobs.c.dedupe_key == dedupe_key))
    return int(existing.scalar_one())


async def insert_jobs(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert many jobs (no dedupe keys) in one batched statement; ids in input order."""
    if not rows:
        return []
    result = await conn.execute(
        insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True), list(rows)
    )
    return [int(r[0]) for r in result]


# ----------------------------------------------------------------------------------------- claim


# The claim is the hot path and the subtle one, so it is written out as SQL, both engines side by
# side. Candidates are ready jobs of our queues and kinds that are due and first in line for their
# key. A keyed job is taken only if (a) it is the oldest unfinished job of its key (todo, failed
# or running), so jobs of one key run one at a time in enqueue order and a job waiting for its
# retry still blocks the later jobs of its key, and (b) no job of its key is running, which
# matters when an operator retries an old dead job while a later one runs. The unique index
# uq_jobs_key_running backs this up inside the database.
#
# PostgreSQL: the candidates are picked in a CTE (evaluated once, materialised) with FOR UPDATE
# SKIP LOCKED, so the rows locked are exactly the rows updated and concurrent claimers never wait
# for each other. A candidate committed by another claimer after our snapshot is re-checked by
# PostgreSQL against the WHERE clause (status is no longer todo) and skipped.
# SQLite: the write lock is already ours (BEGIN IMMEDIATE). INDEXED BY pins the partial index of
# ready jobs: with statistics, SQLite would otherwise scan the whole table in rowid order, which
# grows with the history of finished jobs; it also fails loudly if the index ever stops matching.
_CANDIDATE_FILTER = """
    j.status IN ('todo', 'failed')
    AND j.run_after <= :now
    AND j.queue IN :queues
    AND j.kind IN :kinds
    AND (j."key" IS NULL OR (
        j.id = (SELECT min(head.id) FROM jobs AS head
                WHERE head."key" = j."key" AND head.status IN ('todo', 'failed', 'running'))
        AND NOT EXISTS (SELECT 1 FROM jobs AS busy
                        WHERE busy."key" = j."key" AND busy.status = 'running')))
"""
_CLAIM_SET = """
    status = 'running', attempts = jobs.attempts + 1, locked_by = :worker_id,
    locked_until = :lease_until, started_at = :now, updated_at = :now
"""
_CLAIM_RETURNING = """
    jobs.id, jobs.queue, jobs.kind, jobs."key", jobs.payload, jobs.attempts, jobs.max_attempts,
    jobs.last_error
"""
_CLAIM_SQL = {
    "postgresql": f"""
WITH picked AS (
    SELECT j.id FROM jobs AS j
    WHERE {_CANDIDATE_FILTER}
    ORDER BY j.id
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE jobs SET {_CLAIM_SET}
FROM picked WHERE jobs.id = picked.id
RETURNING {_CLAIM_RETURNING}
""",
    "sqlite": f"""
UPDATE jobs SET {_CLAIM_SET}
WHERE jobs.id IN (
    SELECT j.id FROM jobs AS j INDEXED BY ix_jobs_ready
    WHERE {_CANDIDATE_FILTER}
    ORDER BY j.id
    LIMIT :limit
)
RETURNING {_CLAIM_RETURNING}
""",
}


@cache
def _claim_statement(dialect: str) -> Any:
    return (
        text(_CLAIM_SQL[dialect])
        .bindparams(
            bindparam("now", type_=UTCDateTime()),
            bindparam("lease_until", type_=UTCDateTime()),
            bindparam("worker_id", type_=String()),
            bindparam("limit", type_=Integer()),
            bindparam("queues", expanding=True),
            bindparam("kinds", expanding=True),
        )
        .columns(
            jobs.c.id,
            jobs.c.queue,
            jobs.c.kind,
            jobs.c.key,
            jobs.c.payload,
            jobs.c.attempts,
            jobs.c.max_attempts,
            jobs.c.last_error,
        )
    )


async def claim(
    conn: AsyncConnection,
    *,
    worker_id: str,
    queues: Sequence[str],
    kinds: Sequence[str],
    limit: int,
    now: datetime,
    lease_until: datetime,
) -> list[ClaimedJob]:
    """Move up to ``limit`` claimable jobs to ``running`` under this worker's lease."""
    if limit <= 0 or not kinds or not queues:
        return []
    params = {
        "worker_id": worker_id,
        "queues": list(queues),
        "kinds": list(kinds),
        "limit": limit,
        "now": now,
        "lease_until": lease_until,
    }
    result = await conn.execute(_claim_statement(conn.dialect.name), params)
    claimed = [ClaimedJob(*row) for row in result]
    claimed.sort(key=lambda c: c.id)  # RETURNING order is unspecified; start jobs in id order
    return claimed


# --------------------------------------------------------------------------- running-job updates


def _fenced(worker_id: str, pairs: Iterable[tuple[int, int]]) -> ColumnElement[bool]:
    return and_(
        tuple_(jobs.c.id, jobs.c.attempts).in_(list(pairs)),
        jobs.c.locked_by == worker_id,
        status_in(jobs.c.status, (RUNNING,)),
    )


# Batched completion and heartbeat pass their ids as arrays on PostgreSQL: an expanded
# "IN (...)" of a hundred parameters makes a different, long SQL text for every batch size, which
# psycopg re-parses on every execution (measured: most of the worker's CPU time) and the server
# cannot reuse as a prepared statement.
_COMPLETE_PG = """
UPDATE jobs SET status = 'succeeded', locked_until = NULL, finished_at = :now, updated_at = :now
WHERE (jobs.id, jobs.attempts) IN (
        SELECT * FROM unnest(CAST(:ids AS BIGINT[]), CAST(:attempts AS INTEGER[])))
  AND jobs.locked_by = :worker_id AND jobs.status = 'running'
RETURNING jobs.id
"""
# SKIP LOCKED: a row locked right now is being completed or reaped; waiting for it would only
# delay the other leases. It is extended on the next beat if it is still running.
_HEARTBEAT_PG = """
WITH beat AS (
    SELECT id FROM jobs
    WHERE id = ANY(CAST(:ids AS BIGINT[])) AND locked_by = :worker_id AND status = 'running'
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET locked_until = :until FROM beat WHERE jobs.id = beat.id
RETURNING jobs.id
"""


@cache
def _complete_statement(dialect: str) -> Any:
    now = bindparam("now", type_=UTCDateTime())
    if dialect == "postgresql":
        return text(_COMPLETE_PG).bindparams(now, bindparam("worker_id", type_=String()))
    pairs = tuple_(jobs.c.id, jobs.c.attempts).in_(bindparam("pairs", expanding=True))
    return (
        update(jobs)
        .where(
            pairs,
            jobs.c.locked_by == bindparam("worker_id", type_=String()),
            status_in(jobs.c.status, (RUNNING,)),
        )
        .values(status=_lit(SUCCEEDED), locked_until=None, finished_at=now, updated_at=now)
        .returning(jobs.c.id)
    )


async def complete(
    conn: AsyncConnection, *, worker_id: str, pairs: Sequence[tuple[int, int]], now: datetime
) -> set[int]:
    """Mark ``(id, attempt)`` jobs succeeded; returns the ids actually changed (lease still ours).

    Idempotent: a job already completed (by ``JobContext.complete_in``) is left alone.
    """
    if not pairs:
        return set()
    params: dict[str, Any] = {"worker_id": worker_id, "now": now}
    if _is_pg(conn):
        params["ids"] = [p[0] for p in pairs]
        params["attempts"] = [p[1] for p in pairs]
    else:
        params["pairs"] = list(pairs)
    stmt = _complete_statement(conn.dialect.name)
    return {int(r[0]) for r in await conn.execute(stmt, params)}


async def fail(
    conn: AsyncConnection,
    *,
    worker_id: str,
    job_id: int,
    attempt: int,
    dead: bool,
    run_after: datetime,
    error: Mapping[str, Any],
    give_back_attempt: bool,
    now: datetime,
) -> bool:
    """Record a failed attempt: ``failed`` (retry at ``run_after``) or ``dead``; keep the error."""
    values: dict[str, Any] = {
        "status": _lit(DEAD if dead else FAILED),
        "locked_until": None,
        "last_error": dict(error),
        "updated_at": now,
    }
    if dead:
        values["finished_at"] = now
    else:
        values["run_after"] = run_after
        if give_back_attempt:
            values["attempts"] = jobs.c.attempts - 1
    stmt = (
        update(jobs)
        .where(_fenced(worker_id, [(job_id, attempt)]))
        .values(values)
        .returning(jobs.c.id)
    )
    changed = (await conn.execute(stmt)).first() is not None
    if changed:
        await insert_error(conn, job_id=job_id, attempt=attempt, error=error, now=now)
    return changed


async def insert_error(
    conn: AsyncConnection, *, job_id: int, attempt: int, error: Mapping[str, Any], now: datetime
) -> None:
    await conn.execute(
        insert(job_errors).values(
            job_id=job_id,
            attempt=attempt,
            at=now,
            type=str(error.get("type", "Error"))[:255],
            message=str(error.get("message", "")),
            traceback=error.get("traceback"),
        )
    )


async def extend_leases(
    conn: AsyncConnection, *, worker_id: str, ids: Sequence[int], until: datetime
) -> int:
    """Heartbeat: push back ``locked_until`` of this worker's running jobs; returns how many."""
    if not ids:
        return 0
    if _is_pg(conn):
        stmt: Any = text(_HEARTBEAT_PG).bindparams(bindparam("until", type_=UTCDateTime()))
        params = {"ids": list(ids), "worker_id": worker_id, "until": until}
        return len((await conn.execute(stmt, params)).all())
    stmt = (
        update(jobs)
        .where(
            jobs.c.id.in_(list(ids)),
            jobs.c.locked_by == worker_id,
            status_in(jobs.c.status, (RUNNING,)),
        )
        .values(locked_until=until)
        .returning(jobs.c.id)
    )
    return len((await conn.execute(stmt)).all())


async def reap(
    conn: AsyncConnection, *, now: datetime, error: Mapping[str, Any], limit: int = 500
) -> list[tuple[int, int]]:
    """Give jobs whose lease expired (dead or stalled worker) back as ``failed``, due now.

    The attempt stays counted. The next claim re-runs the job, or dead-letters it when its
    attempts are exhausted. Returns ``(id, attempt)`` of the reaped jobs.
    """
    cond = and_(status_in(jobs.c.status, (RUNNING,)), jobs.c.locked_until < now)
    values = {
        "status": _lit(FAILED),
        "locked_until": None,
        "run_after": now,
        "last_error": dict(error),
        "updated_at": now,
    }
    if _is_pg(conn):
        picked = (
            select(jobs.c.id)
            .where(cond)
            .order_by(jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("expired")
        )
        stmt = update(jobs).where(jobs.c.id == picked.c.id)
    else:
        sub = select(jobs.c.id).where(cond).order_by(jobs.c.id).limit(limit).scalar_subquery()
        stmt = update(jobs).where(jobs.c.id.in_(sub))
    result = await conn.execute(stmt.values(values).returning(jobs.c.id, jobs.c.attempts))
    reaped = [(int(r[0]), int(r[1])) for r in result]
    for job_id, attempt in reaped:
        await insert_error(conn, job_id=job_id, attempt=attempt, error=error, now=now)
    return reaped


async def release(
    conn: AsyncConnection, *, worker_id: str, pairs: Sequence[tuple[int, int]], now: datetime
) -> int:
    """Hand jobs back on shutdown: ``todo``, due now, attempt given back (not the job's fault)."""
    if not pairs:
        return 0
    stmt = (
        update(jobs)
        .where(_fenced(worker_id, pairs))
        .values(
            status=_lit(TODO),
            attempts=jobs.c.attempts - 1,
            locked_until=None,
            run_after=now,
            updated_at=now,
        )
    )
    return (await conn.execute(stmt)).rowcount


# ---------------------------------------------------------------------------------- operators

_JOB_PAGES = Keyset(jobs.c.id)


async def list_jobs(
    conn: AsyncConnection,
    *,
    status: str | None,
    kind: str | None,
    key: str | None,
    cursor: str | None,
    limit: int,
) -> Page[Row[Any]]:
    """Newest first, keyset-paginated by id (stable while jobs are added)."""
    stmt = select(
        jobs.c.id,
        jobs.c.queue,
        jobs.c.kind,
        jobs.c.key,
        jobs.c.status,
        jobs.c.attempts,
        jobs.c.max_attempts,
        jobs.c.run_after,
        jobs.c.created_at,
        jobs.c.updated_at,
        jobs.c.last_error,
    )
    if status is not None:
        stmt = stmt.where(jobs.c.status == status)
    if kind is not None:
        stmt = stmt.where(jobs.c.kind == kind)
    if key is not None:
        stmt = stmt.where(jobs.c.key == key)
    rows: list[Any] = list(await conn.execute(_JOB_PAGES.paginate(stmt, cursor, limit)))
    return _JOB_PAGES.page(rows, limit)


async def get_job(conn: AsyncConnection, job_id: int) -> Row[Any] | None:
    return (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()


async def get_errors(conn: AsyncConnection, job_id: int) -> list[Row[Any]]:
    stmt = select(job_errors).where(job_errors.c.job_id == job_id).order_by(job_errors.c.id)
    return list(await conn.execute(stmt))


async def retry_job(conn: AsyncConnection, job_id: int, now: datetime) -> bool:
    """dead | cancelled -> todo, due now, with a fresh set of attempts (history is kept)."""
    stmt = (
        update(jobs)
        .where(jobs.c.id == job_id, status_in(jobs.c.status, (DEAD, CANCELLED)))
        .values(
            status=_lit(TODO),
            attempts=0,
            run_after=now,
            locked_until=None,
            finished_at=None,
            updated_at=now,
        )
        .returning(jobs.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def cancel_job(conn: AsyncConnection, job_id: int, now: datetime) -> bool:
    """todo | failed -> cancelled. A running job is never touched here."""
    stmt = (
        update(jobs)
        .where(jobs.c.id == job_id, status_in(jobs.c.status, READY))
        .values(status=_lit(CANCELLED), locked_until=None, finished_at=now, updated_at=now)
        .returning(jobs.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


async def job_status(conn: AsyncConnection, job_id: int) -> str | None:
    result = await conn.execute(select(jobs.c.status).where(jobs.c.id == job_id))
    value = result.scalar_one_or_none()
    return None if value is None else str(value)


async def has_unfinished(conn: AsyncConnection) -> bool:
    """Whether any job is todo, failed or running: two probes of the partial indexes, cheap to
    poll (unlike a count, which reads every waiting row)."""
    waiting = select(jobs.c.id).where(status_in(jobs.c.status, READY)).limit(1)
    running = select(jobs.c.id).where(status_in(jobs.c.status, (RUNNING,))).limit(1)
    stmt = select(or_(exists(waiting), exists(running)))
    return bool((await conn.execute(stmt)).scalar_one())
