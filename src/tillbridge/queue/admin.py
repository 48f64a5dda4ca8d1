"""Operator functions: list, show, retry, cancel. Used by ``tillbridge jobs`` and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tillbridge.clock import utcnow
from tillbridge.errors import JobNotFound, JobStateError
from tillbridge.queue import sql
from tillbridge.queue.tables import STATUSES
from tillbridge.store.keyset import Page

if TYPE_CHECKING:
    from tillbridge.store.db import Database

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class JobSummary:
    id: int
    queue: str
    kind: str
    key: str | None
    status: str
    attempts: int
    max_attempts: int | None
    run_after: datetime
    created_at: datetime
    updated_at: datetime
    last_error: dict[str, Any] | None


#: One page of jobs, newest first; pass ``next_cursor`` as ``cursor`` for the next page.
JobPage = Page[JobSummary]


@dataclass(frozen=True, slots=True)
class JobError:
    attempt: int
    at: datetime
    type: str
    message: str
    traceback: str | None


@dataclass(frozen=True, slots=True)
class JobDetail:
    id: int
    queue: str
    kind: str
    key: str | None
    payload: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int | None
    run_after: datetime
    locked_by: str | None
    locked_until: datetime | None
    dedupe_key: str | None
    last_error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    errors: list[JobError]


async def list_jobs(
    db: Database,
    *,
    status: str | None = None,
    kind: str | None = None,
    key: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> JobPage:
    """Jobs matching every given filter, newest first, ``limit`` (1..500) per page.

    Raises :class:`ValueError` for an unknown status or a limit out of range and
    :class:`~tillbridge.errors.InvalidCursor` for a cursor that is not one of ours.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    async with db.read() as conn:
        page = await sql.list_jobs(
            conn, status=status, kind=kind, key=key, cursor=cursor, limit=limit
        )
    return page.map(lambda r: JobSummary(**r._asdict()))


async def get_job(db: Database, job_id: int) -> JobDetail:
    """Everything about one job, with the history of its errors (oldest first)."""
    async with db.read() as conn:
        row = await sql.get_job(conn, job_id)
        if row is None:
            raise JobNotFound(f"job {job_id} not found", job_id=job_id)
        errors = await sql.get_errors(conn, job_id)
    data = row._asdict()
    return JobDetail(
        errors=[JobError(e.attempt, e.at, e.type, e.message, e.traceback) for e in errors],
        **data,
    )


async def retry_job(db: Database, job_id: int, *, now: datetime | None = None) -> None:
    """Put a ``dead`` or ``cancelled`` job back to ``todo``, due now, with fresh attempts.

    Raises :class:`JobNotFound`, or :class:`JobStateError` for any other status.
    """
    async with db.write() as conn:
        if await sql.retry_job(conn, job_id, now or utcnow()):
            return
        status = await sql.job_status(conn, job_id)
    if status is None:
        raise JobNotFound(f"job {job_id} not found", job_id=job_id)
    raise JobStateError(
        f"job {job_id} is {status}; only dead or cancelled jobs can be retried",
        job_id=job_id,
        status=status,
    )


async def cancel_job(db: Database, job_id: int, *, now: datetime | None = None) -> None:
    """Cancel a job that has not started (``todo``) or waits for a retry (``failed``).

    A ``running`` job is refused with :class:`JobStateError`: its handler may already have had
    effects, so stopping it half-way is not something the queue can do safely. Wait for it to
    finish, then act on the result.
    """
    async with db.write() as conn:
        if await sql.cancel_job(conn, job_id, now or utcnow()):
            return
        status = await sql.job_status(conn, job_id)
    if status is None:
        raise JobNotFound(f"job {job_id} not found", job_id=job_id)
    hint = "; it is running, wait for it to finish" if status == "running" else ""
    raise JobStateError(
        f"job {job_id} is {status}; only todo or failed jobs can be cancelled{hint}",
        job_id=job_id,
        status=status,
    )
