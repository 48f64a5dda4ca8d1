"""Reading and writing inbox rows. Every function takes the caller's connection (transaction).

:func:`store` is the intake's one write: insert the row unless its dedupe key exists, and
enqueue its processing job in the same transaction. It never fails on a duplicate (``ON CONFLICT
DO NOTHING`` on both engines, so a PostgreSQL transaction is not aborted by a unique violation);
a concurrent duplicate waits for the first insert's commit and then finds its row.
:func:`store_many` does the same for a batch in three statements (the intake's group commit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row, Select, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.errors import InboxNotFound
from tillbridge.inbound.tables import INBOX_STATUSES, QUEUED, webhook_inbox
from tillbridge.queue import NewJob, enqueue, enqueue_many
from tillbridge.queue.tables import jobs
from tillbridge.store.keyset import Keyset, Page
from tillbridge.store.sql import insert_or_ignore

#: The job kind that processes an inbox row (payload ``{"inbox_id": N}``).
PROCESS_JOB: Final = "webhook.process"
MAX_ERROR_CHARS: Final = 2000


def processing_jobs(inbox_id: int) -> Select[Any]:
    """The processing jobs of row ``inbox_id``, newest first (the first one, then replays)."""
    return (
        select(jobs)
        .where(jobs.c.kind == PROCESS_JOB, jobs.c.payload["inbox_id"].as_integer() == inbox_id)
        .order_by(jobs.c.id.desc())
    )


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One verified delivery, ready to be stored."""

    source: str
    account: str
    dedupe_key: str
    event_id: str | None
    raw_body: bytes
    headers: dict[str, str]
    verification: dict[str, Any]
    remote_addr: str | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class InboxItem:
    """An inbox row as processing and operators see it."""

    id: int
    source: str
    account: str
    dedupe_key: str
    event_id: str | None
    event_type: str | None
    raw_body: bytes
    headers: dict[str, Any]
    verified: bool
    verification: dict[str, Any]
    remote_addr: str | None
    received_at: datetime
    status: str
    attempts: int
    replays: int
    result: dict[str, Any] | None
    error: str | None
    processed_at: datetime | None
    updated_at: datetime


def _item(row: Row[Any]) -> InboxItem:
    m = row._mapping
    return InboxItem(
        id=int(m["id"]),
        source=m["source"],
        account=m["account"],
        dedupe_key=m["dedupe_key"],
        event_id=m["event_id"],
        event_type=m["event_type"],
        raw_body=bytes(m["raw_body"]),
        headers=dict(m["headers"] or {}),
        verified=bool(m["verified"]),
        verification=dict(m["verification"] or {}),
        remote_addr=m["remote_addr"],
        received_at=m["received_at"],
        status=m["status"],
        attempts=int(m["attempts"]),
        replays=int(m["replays"]),
        result=m["result"],
        error=m["error"],
        processed_at=m["processed_at"],
        updated_at=m["updated_at"],
    )


async def store(conn: AsyncConnection, new: NewDelivery) -> tuple[int, bool]:
    """Insert ``new`` and enqueue its processing, unless it is a repeat (see :func:`store_many`)."""
    (result,) = await store_many(conn, [new])
    return result


async def store_many(conn: AsyncConnection, batch: Sequence[NewDelivery]) -> list[tuple[int, bool]]:
    """Insert the new deliveries of ``batch`` and enqueue one processing job per new row.

    Returns ``(inbox_id, created)`` per input, in input order. Idempotent: a delivery whose
    dedupe key exists (in the table, or earlier in ``batch``) gets the first row's id with
    ``created=False`` and no job. Three statements whatever the batch size: one multi-row
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, one ``SELECT`` for the repeats, one
    multi-row job insert.
    """
    if not batch:
        return []
    first: dict[tuple[str, str, str], NewDelivery] = {}
    for new in batch:
        first.setdefault((new.source, new.account, new.dedupe_key), new)
    # executemany with RETURNING ("insertmanyvalues"): the statement is compiled once and
    # cached; compiling a fresh multi-row VALUES per batch would cost more than the insert.
    created: dict[tuple[str, str, str], int] = {
        (r.source, r.account, r.dedupe_key): int(r.id)
        for r in await conn.execute(_INSERT.on(conn), [_values(n) for n in first.values()])
    }
    ids = dict(created)
    missing = [k for k in first if k not in created]
    if missing:
        cols = _KEY_COLUMNS
        rows = await conn.execute(
            select(webhook_inbox.c.id, *cols).where(tuple_(*cols).in_(missing))
        )
        ids.update({(r.source, r.account, r.dedupe_key): int(r.id) for r in rows})
    if created:
        stamp = min(first[k].received_at for k in created)
        await enqueue_many(
            conn,
            [NewJob(PROCESS_JOB, {"inbox_id": i}) for i in sorted(created.values())],
            now=stamp,
        )
    out: list[tuple[int, bool]] = []
    seen: set[tuple[str, str, str]] = set()
    for new in batch:
        key = (new.source, new.account, new.dedupe_key)
        out.append((ids[key], key in created and key not in seen))
        seen.add(key)
    return out


_KEY_COLUMNS: Final = (webhook_inbox.c.source, webhook_inbox.c.account, webhook_inbox.c.dedupe_key)
_INSERT: Final = insert_or_ignore(
    webhook_inbox, index_elements=_KEY_COLUMNS, returning=[webhook_inbox.c.id, *_KEY_COLUMNS]
)
_PAGES: Final = Keyset(webhook_inbox.c.id)


def _values(new: NewDelivery) -> dict[str, Any]:
    return {
        "source": new.source,
        "account": new.account,
        "dedupe_key": new.dedupe_key,
        "event_id": new.event_id,
        "raw_body": new.raw_body,
        "headers": new.headers,
        "verified": True,
        "verification": new.verification,
        "remote_addr": new.remote_addr,
        "received_at": new.received_at,
        "status": QUEUED,
        "attempts": 0,
        "replays": 0,
        "updated_at": new.received_at,
    }


async def get(conn: AsyncConnection, inbox_id: int, *, for_update: bool = False) -> InboxItem:
    """The row ``inbox_id``; raises :class:`InboxNotFound`."""
    stmt = select(webhook_inbox).where(webhook_inbox.c.id == inbox_id)
    if for_update and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise InboxNotFound(f"inbox entry {inbox_id} not found", inbox_id=inbox_id)
    return _item(row)


async def settle(
    conn: AsyncConnection,
    inbox_id: int,
    status: str,
    *,
    now: datetime,
    attempt: int,
    event_type: str | None = None,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Record how processing ended (or that an attempt failed) for row ``inbox_id``."""
    if status not in INBOX_STATUSES:
        raise ValueError(f"unknown inbox status {status!r}")
    values: dict[str, Any] = {
        "status": status,
        "attempts": attempt,
        "error": error[:MAX_ERROR_CHARS] if error else None,
        "updated_at": now,
    }
    if event_type is not None:
        values["event_type"] = event_type[:200]
    if result is not None:
        values["result"] = dict(result)
    if status != QUEUED:
        values["processed_at"] = now
    await conn.execute(update(webhook_inbox).where(webhook_inbox.c.id == inbox_id).values(values))


async def list_items(
    conn: AsyncConnection,
    *,
    status: str | None = None,
    source: str | None = None,
    account: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[InboxItem]:
    """Rows matching every filter, newest first (keyset pagination by id)."""
    stmt = select(webhook_inbox)
    if status is not None:
        stmt = stmt.where(webhook_inbox.c.status == status)
    if source is not None:
        stmt = stmt.where(webhook_inbox.c.source == source)
    if account is not None:
        stmt = stmt.where(webhook_inbox.c.account == account)
    rows = list(await conn.execute(_PAGES.paginate(stmt, cursor, limit)))
    return _PAGES.page(rows, limit).map(_item)


async def mark_replayed(conn: AsyncConnection, item: InboxItem, now: datetime) -> int:
    """Back to ``queued`` with one more replay; enqueue the new processing job; its id."""
    await conn.execute(
        update(webhook_inbox)
        .where(webhook_inbox.c.id == item.id)
        .values(status=QUEUED, replays=item.replays + 1, error=None, updated_at=now)
    )
    return await enqueue(conn, PROCESS_JOB, {"inbox_id": item.id}, now=now)
