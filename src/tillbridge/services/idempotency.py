"""Idempotent requests: the first response to an ``Idempotency-Key`` is stored and replayed.

The contract (DESIGN invariant 4), per API key, like Stripe's:

- The first request with a key **claims** it by inserting its row *in the same transaction as
  the work*, and stores the response (status and body) in that row before the commit. A crash
  therefore leaves either nothing (the transaction rolled back: the client may simply retry) or
  the work *and* its stored response; never work without a response to replay.
- A repeat with the same key and the same request (method, path, canonical body) gets the
  stored status and body back, byte for byte, for ``ttl_s`` seconds (24 h by default).
- The same key with a different request is :class:`~tillbridge.errors.IdempotencyMismatch` (422).
- A request while the first is still running is :class:`~tillbridge.errors.IdempotencyInProgress`
  (409).
- Rows past ``expires_at`` are ignored: the key may be used again, for anything.
- Errors that mean "nothing happened" (validation, unknown connector, store unavailable) raise
  out of the transaction, so the claim rolls back with the work and nothing is stored: fixing the
  request and retrying with the same key works. Only a completed piece of work is replayed.

How "still running" is detected differs by engine, because their locking differs:

- **PostgreSQL**: the claimer first takes ``pg_try_advisory_xact_lock`` on a 64-bit digest of
  (API key, key), then ``INSERT ... ON CONFLICT DO NOTHING``. A second transaction that fails to
  get the advisory lock answers 409 at once instead of blocking on the first one's uncommitted
  unique-index entry (which a plain insert would do until the first commits). The lock is
  released by the commit or rollback, so a later request sees the committed row and replays.
  A collision of two different keys on the same 64-bit digest gives a spurious 409, once in
  about 2**64 pairs.
- **SQLite**: ``Database.write()`` begins with ``BEGIN IMMEDIATE``, so writers are serialised
  (and queued in-process first, see :meth:`Database.write`): the
  second request waits for the first to commit (another process's writer: up to the busy
  timeout, then 503) and then replays its stored response. An uncommitted claim is never
  visible to another writer.
- **Both**: a committed row without a response (a claim committed without :func:`complete`,
  which this module's :func:`run_idempotent` never does) counts as in progress until
  ``locked_until``, and is reclaimed after that.

:func:`purge_expired` deletes expired rows; the lead's scheduler calls it (e.g. hourly).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import BigInteger, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.clock import utcnow
from tillbridge.errors import IdempotencyInProgress, IdempotencyMismatch
from tillbridge.store.db import Database
from tillbridge.store.sql import insert_or_ignore
from tillbridge.store.tables import idempotency_keys as t

#: How long a committed claim without a response counts as "in progress" before it is reclaimed.
DEFAULT_LOCK_S: Final = 60


@dataclass(frozen=True, slots=True)
class IdempotencyScope:
    """What identifies one idempotent request: who sent it, with which key, for what."""

    api_key_id: str
    key: str
    method: str
    path: str
    request_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response as stored for replay: status code and the exact body bytes."""

    status_code: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """This transaction owns the key (row ``row_id``) and must :func:`complete` it."""

    row_id: int


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_hash(method: str, path: str, body: Any) -> bytes:
    """SHA-256 over method, path and the canonical JSON of the (validated) body."""
    h = hashlib.sha256()
    h.update(method.upper().encode())
    h.update(b"\n")
    h.update(path.encode())
    h.update(b"\n")
    h.update(canonical_json(body))
    return h.digest()


# Built once: constructing a statement and its cache key costs more Python time than running it
# on the hot path; executing a prebuilt one with a parameter dict reuses both.
_PG_TRY_LOCK: Final = select(func.pg_try_advisory_xact_lock(bindparam("lock_id", type_=BigInteger)))
_CLAIM: Final = insert_or_ignore(t, index_elements=[t.c.api_key_id, t.c.key], returning=[t.c.id])
_COMPLETE: Final = (
    update(t)
    .where(t.c.id == bindparam("row_id"))
    .values(
        status_code=bindparam("status_code"),
        response_body=bindparam("response_body"),
        locked_until=None,
    )
)


def _advisory_lock_id(scope: IdempotencyScope) -> int:
    digest = hashlib.sha256(
        b"tillbridge.idempotency\0" + scope.api_key_id.encode() + b"\0" + scope.key.encode()
    ).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def begin(
    conn: AsyncConnection,
    scope: IdempotencyScope,
    *,
    now: datetime,
    ttl_s: int,
    lock_s: int = DEFAULT_LOCK_S,
) -> Claim | StoredResponse:
    """Claim ``scope.key`` inside the caller's write transaction, or return what to replay.

    Returns a :class:`Claim` (do the work, then :func:`complete` before commit) or the
    :class:`StoredResponse` of the first request. Raises :class:`IdempotencyMismatch` if the key
    was used for a different request, :class:`IdempotencyInProgress` if the first request is
    still running.
    """
    is_pg = conn.dialect.name == "postgresql"
    if is_pg:
        got = await conn.scalar(_PG_TRY_LOCK, {"lock_id": _advisory_lock_id(scope)})
        if not got:
            raise IdempotencyInProgress(key=scope.key)
    fresh = {
        "method": scope.method,
        "path": scope.path,
        "request_hash": scope.request_hash,
        "status_code": None,
        "response_body": None,
        "locked_until": now + timedelta(seconds=lock_s),
        "created_at": now,
        "expires_at": now + timedelta(seconds=ttl_s),
    }
    claim_stmt = _CLAIM.on(conn)
    # Two rounds at most: the second only if a purge deleted the expired row we meant to reuse.
    for _ in range(2):
        params = {"api_key_id": scope.api_key_id, "key": scope.key, **fresh}
        row_id = (await conn.execute(claim_stmt, params)).scalar()
        if row_id is not None:
            return Claim(int(row_id))

        row = (
            (
                await conn.execute(
                    select(t).where(t.c.api_key_id == scope.api_key_id, t.c.key == scope.key)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            continue  # deleted between our insert and select (purge): insert again
        expires_at = row["expires_at"]
        locked_until = row["locked_until"]
        assert expires_at is not None
        abandoned = row["status_code"] is None and (locked_until is None or locked_until <= now)
        if expires_at <= now or abandoned:
            # Expired (or an abandoned claim): the key is free again; take the row over.
            res = await conn.execute(
                update(t).where(t.c.id == row["id"], _free(now)).values(**fresh)
            )
            if res.rowcount == 1:
                return Claim(int(row["id"]))
            continue
        if bytes(row["request_hash"]) != scope.request_hash:
            raise IdempotencyMismatch(key=scope.key)
        if row["status_code"] is None:
            raise IdempotencyInProgress(key=scope.key)
        return StoredResponse(int(row["status_code"]), bytes(row["response_body"] or b""))
    raise IdempotencyInProgress(key=scope.key)


async def complete(conn: AsyncConnection, claim: Claim, response: StoredResponse) -> None:
    """Store the response for replay, in the same transaction as the work (before commit)."""
    await conn.execute(
        _COMPLETE,
        {
            "row_id": claim.row_id,
            "status_code": response.status_code,
            "response_body": response.body,
        },
    )


async def run_idempotent(
    db: Database,
    scope: IdempotencyScope,
    work: Callable[[AsyncConnection], Awaitable[StoredResponse]],
    *,
    now: datetime,
    ttl_s: int,
) -> tuple[StoredResponse, bool]:
    """Run ``work`` at most once per key; returns ``(response, replayed)``.

    ``work`` runs inside the write transaction that claimed the key and returns the response to
    store; any exception it raises rolls back the work and the claim together (nothing stored).
    ``work`` must only write through ``conn`` (no outbound calls: persist, and let a job send).
    """
    async with db.write() as conn:
        outcome = await begin(conn, scope, now=now, ttl_s=ttl_s)
        if isinstance(outcome, StoredResponse):
            return outcome, True
        response = await work(conn)
        await complete(conn, outcome, response)
    return response, False


def _free(at: datetime) -> Any:
    """Rows whose key may be used again at ``at``: expired, or a claim abandoned past its lock."""
    return or_(t.c.expires_at <= at, and_(t.c.status_code.is_(None), t.c.locked_until <= at))


async def purge_expired(conn: AsyncConnection, *, now: datetime | None = None) -> int:
    """Delete expired rows (and abandoned claims past their lock); returns how many."""
    at = now or utcnow()
    res = await conn.execute(delete(t).where(_free(at)))
    return int(res.rowcount or 0)
