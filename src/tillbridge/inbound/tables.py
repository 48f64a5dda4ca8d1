"""The webhook inbox: one row per accepted delivery, kept with its raw bytes.

A row is inserted, together with the job that will process it, in the transaction that commits
before the sender gets its 2xx (design invariant 3). ``uq_webhook_inbox_dedupe`` makes a repeated
delivery find the first row instead of creating a second one: ``dedupe_key`` is ``id:<event id>``
when the provider's scheme carries an event id, else ``sha256:<hex>`` of the raw body (source and
account are part of the constraint, so the hash covers all three).

Status life cycle::

    queued ──process──> processed | recorded | ignored | invalid | duplicate
       │  └──error──> retrying ──(attempts left)──> process again
       │                  └──(none left / permanent)──> dead
       └──<──operator replay── any state

``processed``: the event caused its effect (a payment); ``recorded``: understood and stored but
deliberately not acted on (terminal mode, refunds); ``ignored``: an event type we do not process;
``invalid``: the verified body cannot be acted on (bad amount, missing field), never retried;
``duplicate``: same provider payment as an earlier event; ``dead``: processing kept failing.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from tillbridge.store.metadata import metadata
from tillbridge.store.types import BigId, UTCDateTime

QUEUED: Final = "queued"
RETRYING: Final = "retrying"
PROCESSED: Final = "processed"
RECORDED: Final = "recorded"
IGNORED: Final = "ignored"
INVALID: Final = "invalid"
DUPLICATE: Final = "duplicate"
DEAD: Final = "dead"

INBOX_STATUSES: Final = (QUEUED, RETRYING, PROCESSED, RECORDED, IGNORED, INVALID, DUPLICATE, DEAD)
#: Processing has finished one way or another (an operator may still replay).
SETTLED: Final = frozenset({PROCESSED, RECORDED, IGNORED, INVALID, DUPLICATE, DEAD})

_BigId = BigId
_Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

webhook_inbox = Table(
    "webhook_inbox",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("account", String(64), nullable=False),
    Column("dedupe_key", String(200), nullable=False),
    Column("event_id", String(255)),
    # Filled by processing (the body is not parsed before the 2xx).
    Column("event_type", String(200)),
    Column("raw_body", LargeBinary, nullable=False),
    # Selected request headers, secrets redacted (the signature itself is never stored).
    Column("headers", _Json, nullable=False),
    Column("verified", Boolean, nullable=False),
    # {"scheme", "timestamp", "secret_index"}: which key verified it tells when an old one retires.
    Column("verification", _Json, nullable=False),
    Column("remote_addr", String(64)),
    Column("received_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    # Operator replays so far; each enqueued one more ``webhook.process`` job for this row.
    Column("replays", Integer, nullable=False, default=0),
    # What processing did: {"payment_id": ...} or {"reason": ...}.
    Column("result", _Json),
    Column("error", Text),
    Column("processed_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "account", "dedupe_key", name="uq_webhook_inbox_dedupe"),
    Index("ix_webhook_inbox_status_id", "status", "id"),
)
