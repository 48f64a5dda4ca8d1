"""Durable job queue: enqueue in the caller's transaction, claim, lease, retry, dead letter.

Works on SQLite (one host, one worker process per database file) and PostgreSQL (any number of
worker processes and hosts: claims use ``FOR UPDATE SKIP LOCKED``).

Producer side, in the transaction that makes the business change (transactional outbox)::

    async with db.write() as conn:
        await conn.execute(...)                                    # the business change
        await enqueue(conn, "erp.post_payment", {"payment_id": pid}, key=f"order:{ref}")

Consumer side::

    registry = JobRegistry()

    @registry.handler("erp.post_payment", retry=RetryPolicy(max_attempts=8))
    async def post_payment(ctx: JobContext) -> None: ...

    registry.periodic("audit.purge", every=timedelta(days=1), offset=timedelta(hours=3))
    await Worker(db, registry, concurrency=8).run(stop_event)

Guarantees: a job exists iff its transaction committed; handlers run at least once (see the
handler contract in :mod:`tillbridge.queue.registry`); at most one job per ``key`` runs at a time
and jobs of a key start in enqueue order; a job whose worker died is run again once its lease
expires, and its lost attempt counts; after ``max_attempts`` a job is ``dead`` with its last
error kept. Statuses: ``todo``, ``running``, ``succeeded``, ``failed`` (a retry is pending at
``run_after``), ``dead``, ``cancelled``.

Not here: an in-memory double. :func:`enqueue` writes through the caller's SQLAlchemy connection
so that it shares the caller's transaction; tests use a real SQLite file, which is fast enough.
"""

from __future__ import annotations

from tillbridge.errors import (
    JobNotFound,
    JobStateError,
    LeaseLost,
    PermanentFailure,
    RetryLater,
    UnknownJobKind,
)
from tillbridge.queue.admin import (
    JobDetail,
    JobError,
    JobPage,
    JobSummary,
    cancel_job,
    get_job,
    list_jobs,
    retry_job,
)
from tillbridge.queue.enqueue import NewJob, enqueue, enqueue_many, enqueue_periodic, schedule_due
from tillbridge.queue.metrics import QueueMetrics
from tillbridge.queue.policy import DEFAULT_RETRY, Periodic
from tillbridge.queue.registry import Handler, JobContext, JobRegistry, KindSpec
from tillbridge.queue.sql import ClaimedJob
from tillbridge.queue.tables import STATUSES
from tillbridge.queue.worker import Worker
from tillbridge.retry import RetryPolicy

__all__ = [
    "DEFAULT_RETRY",
    "STATUSES",
    "ClaimedJob",
    "Handler",
    "JobContext",
    "JobDetail",
    "JobError",
    "JobNotFound",
    "JobPage",
    "JobRegistry",
    "JobStateError",
    "JobSummary",
    "KindSpec",
    "LeaseLost",
    "NewJob",
    "Periodic",
    "PermanentFailure",
    "QueueMetrics",
    "RetryLater",
    "RetryPolicy",
    "UnknownJobKind",
    "Worker",
    "cancel_job",
    "enqueue",
    "enqueue_many",
    "enqueue_periodic",
    "get_job",
    "list_jobs",
    "retry_job",
    "schedule_due",
]
