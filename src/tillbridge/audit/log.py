"""Writing, reading and purging the audit log.

Write an entry in the transaction of the change it records, so that both commit or neither
does::

    async with db.write() as conn:
        await payments.transition(conn, pid, "captured")
        await record(conn, action="payment.state_changed", actor="worker",
                     subject_type="payment", subject_id=pid,
                     payload={"from": "authorized", "to": "captured"},
                     request_id=rid, redactor=redactor)

The payload is redacted with the :class:`~tillbridge.observability.redaction.Redactor` passed in
(the process's one instance, shared with the logging set-up) and stored as JSON; what is stored
is what anyone reading the table later sees.

Retention: :func:`purge_job` (registered by the application as a periodic job) deletes entries
older than ``retention_days``, in short batches, each its own transaction.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.audit.tables import (
    ACTION_LEN,
    ACTOR_LEN,
    REQUEST_ID_LEN,
    SUBJECT_ID_LEN,
    SUBJECT_TYPE_LEN,
    audit_log,
)
from tillbridge.clock import utcnow
from tillbridge.errors import ConfigError
from tillbridge.observability.redaction import Redactor
from tillbridge.store.db import Database
from tillbridge.store.keyset import Keyset, Page

__all__ = ["AuditEntry", "purge", "purge_job", "query", "record"]

#: Largest number of rows :func:`query` returns at once.
MAX_LIMIT: Final = 1000
#: Rows one :func:`purge` call deletes at most (one short write transaction on SQLite).
PURGE_BATCH: Final = 1000
#: A payload whose JSON is longer than this is stored as a truncated preview instead.
MAX_PAYLOAD_CHARS: Final = 64 * 1024
#: Characters of the preview kept for an oversized payload.
PREVIEW_CHARS: Final = 4096


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log, as read back by :func:`query`."""

    id: int
    occurred_at: datetime
    actor: str
    action: str
    subject_type: str | None
    subject_id: str | None
    payload: Any
    request_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``occurred_at`` in ISO 8601) for the API and the dashboard."""
        return {
            "id": self.id,
            "occurred_at": self.occurred_at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "payload": self.payload,
            "request_id": self.request_id,
        }


def _check(name: str, value: str | None, limit: int, *, required: bool = False) -> None:
    # Programming errors, not user input: raise at the call site instead of letting SQLite
    # store a too-long value that PostgreSQL would reject.
    if value is None:
        if required:
            raise ValueError(f"audit {name} is required")
        return
    if required and not value.strip():
        raise ValueError(f"audit {name} must not be empty")
    if len(value) > limit:
        raise ValueError(f"audit {name} longer than {limit} characters")


def _jsonable(obj: Any) -> Any:
    # After redaction only str/int/float/bool/None and containers are left; make the containers
    # JSON's own (string keys, lists) and the floats JSON-legal (PostgreSQL rejects NaN).
    if isinstance(obj, Mapping):
        return {k if isinstance(k, str) else str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def _prepare_payload(payload: Mapping[str, Any] | None, redactor: Redactor) -> Any:
    if payload is None:
        return None
    clean = _jsonable(redactor.redact(payload))
    text = json.dumps(clean, ensure_ascii=False, separators=(",", ":"))
    if len(text) <= MAX_PAYLOAD_CHARS:
        return clean
    # Cutting redacted text can leave a digit run that looks like a PAN: redact the cut again.
    return {
        "truncated": True,
        "original_chars": len(text),
        "preview": redactor.redact_text(text[:PREVIEW_CHARS]),
    }


# Built once: constructing ``insert().values(...)`` per call costs more than the INSERT itself.
_INSERT = insert(audit_log)


async def record(
    conn: AsyncConnection,
    *,
    action: str,
    actor: str,
    subject_type: str | None = None,
    subject_id: str | None = None,
    payload: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    redactor: Redactor,
    occurred_at: datetime | None = None,
) -> int:
    """Append one entry inside ``conn``'s transaction; return its id.

    The entry commits or rolls back with the caller's transaction (never commits on its own).
    ``payload`` is redacted with ``redactor``, made JSON-safe (non-JSON values become strings)
    and stored; payloads over :data:`MAX_PAYLOAD_CHARS` are stored as a redacted preview.
    ``actor``, ``action``, ``subject_*`` and ``request_id`` are stored as given: they are
    identifiers chosen by the bridge and must not carry card data or secrets.
    ``occurred_at`` defaults to now (UTC); pass the injected clock's time where there is one.

    Raises :class:`ValueError` for an empty ``action``/``actor``, an over-long field or a naive
    ``occurred_at``.
    """
    _check("action", action, ACTION_LEN, required=True)
    _check("actor", actor, ACTOR_LEN, required=True)
    _check("subject_type", subject_type, SUBJECT_TYPE_LEN)
    _check("subject_id", subject_id, SUBJECT_ID_LEN)
    _check("request_id", request_id, REQUEST_ID_LEN)
    when = occurred_at if occurred_at is not None else utcnow()
    if when.tzinfo is None:
        raise ValueError("audit occurred_at must be timezone-aware")
    result = await conn.execute(
        _INSERT,
        {
            "occurred_at": when,
            "actor": actor,
            "action": action,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "payload": _prepare_payload(payload, redactor),
            "request_id": request_id,
        },
    )
    pk = result.inserted_primary_key
    assert pk is not None  # an INSERT of one row always reports its key
    return int(pk[0])


async def query(
    conn: AsyncConnection,
    subject_type: str | None = None,
    subject_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[AuditEntry]:
    """Entries matching every given filter, newest first (by id, i.e. by insertion).

    ``since`` keeps entries with ``occurred_at >= since`` (timezone-aware). Pages: pass the
    page's ``next_cursor`` as ``cursor`` to get the next, older page (keyset pagination, stable
    while new entries arrive; null on the last page). ``limit`` is clamped to
    1..:data:`MAX_LIMIT`. Raises :class:`~tillbridge.errors.InvalidCursor` for a cursor that is
    not one of ours.
    """
    stmt = select(audit_log)
    if subject_type is not None:
        stmt = stmt.where(audit_log.c.subject_type == subject_type)
    if subject_id is not None:
        stmt = stmt.where(audit_log.c.subject_id == subject_id)
    if action is not None:
        stmt = stmt.where(audit_log.c.action == action)
    if since is not None:
        stmt = stmt.where(audit_log.c.occurred_at >= since)
    limit = max(1, min(limit, MAX_LIMIT))
    rows = list(await conn.execute(_PAGES.paginate(stmt, cursor, limit)))
    return _PAGES.page(rows, limit).map(_entry)


_PAGES: Final = Keyset(audit_log.c.id)


def _entry(row: Any) -> AuditEntry:
    r = row._mapping
    return AuditEntry(
        id=int(r["id"]),
        occurred_at=r["occurred_at"],
        actor=r["actor"],
        action=r["action"],
        subject_type=r["subject_type"],
        subject_id=r["subject_id"],
        payload=r["payload"],
        request_id=r["request_id"],
    )


async def purge(
    conn: AsyncConnection, older_than: datetime, *, batch_size: int = PURGE_BATCH
) -> int:
    """Delete at most ``batch_size`` entries with ``occurred_at < older_than``; return how many.

    Bounded on purpose: on SQLite a delete holds the database's single write lock until the
    transaction ends, so a year of entries must not go in one statement. Call it again (in a new
    transaction) while it returns ``batch_size``; :func:`purge_job` does exactly that. An entry
    exactly at ``older_than`` is kept.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    # DELETE ... LIMIT is not portable (SQLite builds usually lack it); a keyed subquery is.
    doomed = (
        select(audit_log.c.id)
        .where(audit_log.c.occurred_at < older_than)
        .order_by(audit_log.c.id)
        .limit(batch_size)
    )
    result = await conn.execute(delete(audit_log).where(audit_log.c.id.in_(doomed)))
    return int(result.rowcount)


async def purge_job(
    db: Database,
    retention_days: int,
    now: datetime,
    *,
    batch_size: int = PURGE_BATCH,
    max_batches: int | None = None,
) -> int:
    """Delete entries older than ``now - retention_days``; return how many were deleted.

    Meant to run as a periodic job (``audit.purge``); safe to run concurrently or repeatedly.
    Each batch is its own short write transaction, and the loop yields between batches so
    other writers get the lock. ``max_batches`` bounds one run (the next run continues where
    this one stopped). When anything was deleted, one ``audit.purged`` entry (actor ``system``)
    records the count and the cutoff.

    Raises :class:`~tillbridge.errors.ConfigError` when ``retention_days`` is below 1 (a zero
    would delete the whole log) and :class:`ValueError` for a naive ``now``.
    """
    if retention_days < 1:
        raise ConfigError("audit_retention_days must be at least 1", retention_days=retention_days)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    cutoff = now - timedelta(days=retention_days)
    total = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        async with db.write() as conn:
            deleted = await purge(conn, cutoff, batch_size=batch_size)
        total += deleted
        batches += 1
        if deleted < batch_size:
            break
        await asyncio.sleep(0)
    if total:
        async with db.write() as conn:
            await record(
                conn,
                action="audit.purged",
                actor="system",
                subject_type="audit_log",
                payload={
                    "deleted": total,
                    "cutoff": cutoff.astimezone(UTC).isoformat(),
                    "retention_days": retention_days,
                },
                redactor=_PLAIN,
                occurred_at=now,
            )
    return total


# The purge entry holds only counts and a date: nothing for configured secrets to match.
_PLAIN: Final = Redactor()
