"""Operator functions for the webhook inbox: list, show (with the processing job), replay.

Used by ``tillbridge webhooks list|show|replay`` and ``/v1/webhooks/inbox`` alike. Bodies are
shown through the card-data :class:`Redactor` (what is stored is the exact bytes, for replay).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from tillbridge.clock import utcnow
from tillbridge.errors import InboxBusy, ValidationError
from tillbridge.inbound import inbox
from tillbridge.inbound.inbox import InboxItem, processing_jobs
from tillbridge.inbound.tables import INBOX_STATUSES
from tillbridge.observability.redaction import Redactor
from tillbridge.queue.tables import ACTIVE, job_errors
from tillbridge.store.db import Database
from tillbridge.store.keyset import Page

MAX_PAGE = 500


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def summary(item: InboxItem) -> dict[str, Any]:
    """The listing form of a row (no body, no headers)."""
    return {
        "id": item.id,
        "source": item.source,
        "account": item.account,
        "event_id": item.event_id,
        "event_type": item.event_type,
        "status": item.status,
        "attempts": item.attempts,
        "replays": item.replays,
        "received_at": _iso(item.received_at),
        "processed_at": _iso(item.processed_at),
        "result": item.result,
        "error": item.error,
    }


async def list_inbox(
    db: Database,
    *,
    status: str | None = None,
    source: str | None = None,
    account: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[dict[str, Any]]:
    """Rows newest first; pass the page's ``next_cursor`` as ``cursor`` for the next page.

    Raises :class:`~tillbridge.errors.ValidationError` for an unknown status or a limit out of
    range, :class:`~tillbridge.errors.InvalidCursor` for a cursor that is not one of ours.
    """
    if status is not None and status not in INBOX_STATUSES:
        raise ValidationError(f"unknown status {status!r}; one of {', '.join(INBOX_STATUSES)}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE}")
    async with db.read() as conn:
        page = await inbox.list_items(
            conn, status=status, source=source, account=account, cursor=cursor, limit=limit
        )
    return page.map(summary)


async def show_inbox(db: Database, inbox_id: int, redactor: Redactor) -> dict[str, Any]:
    """Everything about one row: body (redacted for display), headers, verification, and the
    current processing job with its error history."""
    async with db.read() as conn:
        item = await inbox.get(conn, inbox_id)
        job = (await conn.execute(processing_jobs(item.id).limit(1))).first()
        errors: list[dict[str, Any]] = []
        if job is not None:
            rows = await conn.execute(
                select(job_errors).where(job_errors.c.job_id == job.id).order_by(job_errors.c.id)
            )
            errors = [
                {"attempt": e.attempt, "at": _iso(e.at), "type": e.type, "message": e.message}
                for e in rows
            ]
    out = summary(item)
    out.update(
        {
            "body": redactor.redact_text(item.raw_body.decode("utf-8", errors="replace")),
            "body_bytes": len(item.raw_body),
            "headers": item.headers,
            "verified": item.verified,
            "verification": item.verification,
            "remote_addr": item.remote_addr,
            "dedupe_key": item.dedupe_key,
            "job": None
            if job is None
            else {
                "id": int(job.id),
                "status": job.status,
                "attempts": int(job.attempts),
                "run_after": _iso(job.run_after),
                "errors": errors,
            },
        }
    )
    return out


async def replay(db: Database, inbox_id: int, *, now: datetime | None = None) -> int:
    """Process the stored event again (a new job); returns the job id.

    Processing is idempotent per event, so replaying an event that already caused its effect
    causes nothing new; replay is meant for ``dead`` and ``invalid`` events after a fix.
    Refused with :class:`InboxBusy` while the current job is still queued or running.
    """
    stamp = now or utcnow()
    async with db.write() as conn:
        item = await inbox.get(conn, inbox_id, for_update=True)
        latest = (await conn.execute(processing_jobs(item.id).limit(1))).first()
        status = latest.status if latest is not None else None
        if status in ACTIVE:
            raise InboxBusy(f"inbox entry {inbox_id} is already queued ({status})", status=status)
        return await inbox.mark_replayed(conn, item, stamp)
