"""Job queue tables: ``jobs`` (one row per job, its whole life) and ``job_errors`` (history).

Status life cycle (see :mod:`tillbridge.queue`)::

    todo ──claim──> running ──ok──> succeeded
      ^               │  │
      │               │  └──error, attempts left──> failed ──(run_after passes)──> claim again
      │               └────error, none left / permanent──> dead
      └──operator retry── dead | cancelled <──operator cancel── todo | failed

The indexes are part of the design, not tuning:

* ``ix_jobs_ready``: partial index over claimable rows in id (enqueue) order, so a claim reads only
  work that is waiting, however many finished rows the table holds.
* ``ix_jobs_key_active``: finds the head (oldest unfinished job) of a key in one index probe; the
  claim only takes the head of each key (per-key serialization, enqueue order).
* ``uq_jobs_key_running``: at most one ``running`` job per key, enforced by the database itself on
  both engines, whatever a claimer's snapshot believed.
* ``ix_jobs_lease``: the reaper finds expired leases without scanning.

Status values are written into SQL as literals (never bound parameters) so that both planners can
prove a query's ``status IN (...)`` implies a partial index's predicate.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    literal_column,
)
from sqlalchemy.dialects.postgresql import JSONB

from tillbridge.store.metadata import metadata
from tillbridge.store.types import BigId, UTCDateTime

TODO = "todo"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
DEAD = "dead"
CANCELLED = "cancelled"

STATUSES = (TODO, RUNNING, SUCCEEDED, FAILED, DEAD, CANCELLED)
#: Waiting for a worker (``failed`` = a retry is pending; it waits for ``run_after`` like todo).
READY = (TODO, FAILED)
#: Not finished: these hold their key (later jobs of the same key wait behind them).
ACTIVE = (TODO, FAILED, RUNNING)
#: Finished for good (an operator may still retry ``dead`` and ``cancelled``).
FINAL = (SUCCEEDED, DEAD, CANCELLED)


# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a busy table.
_BigId = BigId
_Json = JSON().with_variant(JSONB(), "postgresql")


def status_in(column: Any, statuses: tuple[str, ...]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the values as SQL literals (see the module docstring)."""
    if len(statuses) == 1:
        result: ColumnElement[bool] = column == literal_column(f"'{statuses[0]}'")
        return result
    return column.in_([literal_column(f"'{s}'") for s in statuses])  # type: ignore[no-any-return]


jobs = Table(
    "jobs",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("queue", String(64), nullable=False),
    Column("kind", String(128), nullable=False),
    # Serialization key (an order reference, a terminal id): one running job per key, in order.
    Column("key", String(255)),
    Column("payload", _Json, nullable=False),
    Column("status", String(16), nullable=False),
    # Number of claims so far (the current attempt while running). A lease that expires counts.
    Column("attempts", Integer, nullable=False),
    # NULL: the retry policy registered for the kind decides.
    Column("max_attempts", Integer),
    Column("run_after", UTCDateTime, nullable=False),
    # The worker that holds (running) or last held the lease, and until when it holds it.
    Column("locked_by", String(128)),
    Column("locked_until", UTCDateTime),
    # Unique when set: a repeated enqueue with the same dedupe key returns the first job.
    Column("dedupe_key", String(255), unique=True),
    # {"type", "message", "traceback", "attempt", "at"} of the latest failure.
    Column("last_error", _Json),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")", name="status"),
    CheckConstraint("attempts >= 0", name="attempts"),
)

Index(
    "ix_jobs_ready",
    jobs.c.id,
    postgresql_where=status_in(jobs.c.status, READY),
    sqlite_where=status_in(jobs.c.status, READY),
)
_key_active = and_(jobs.c.key.is_not(None), status_in(jobs.c.status, ACTIVE))
Index(
    "ix_jobs_key_active",
    jobs.c.key,
    jobs.c.id,
    postgresql_where=_key_active,
    sqlite_where=_key_active,
)
_key_running = and_(jobs.c.key.is_not(None), status_in(jobs.c.status, (RUNNING,)))
Index(
    "uq_jobs_key_running",
    jobs.c.key,
    unique=True,
    postgresql_where=_key_running,
    sqlite_where=_key_running,
)
Index(
    "ix_jobs_lease",
    jobs.c.locked_until,
    postgresql_where=status_in(jobs.c.status, (RUNNING,)),
    sqlite_where=status_in(jobs.c.status, (RUNNING,)),
)
# Operator listing by status, newest first. Deliberately no (kind, id) index: planners pick it for
# the claim (kind IN ...) and then walk every finished job of the kind on each claim.
Index("ix_jobs_status_id", jobs.c.status, jobs.c.id)

job_errors = Table(
    "job_errors",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("job_id", _BigId, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("type", String(255), nullable=False),
    Column("message", Text, nullable=False),
    Column("traceback", Text),
    Index("ix_job_errors_job_id", "job_id", "id"),
)
