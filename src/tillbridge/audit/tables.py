"""The ``audit_log`` table: who did what to which subject, when.

One row per audited event (a payment state change, an outbound HTTP call, an inbound webhook, an
API key created, an operator resolving a payment...). Rows are append-only; only the retention
purge deletes them (:func:`tillbridge.audit.log.purge`). ``payload`` is JSON that has already
been through the one :class:`~tillbridge.observability.redaction.Redactor`: the table never holds
a full PAN, track data, a CVV, a PIN block or a secret (design invariant 6).

Indexes: ``(subject_type, subject_id)`` answers "history of this payment"; ``occurred_at``
serves the ``since`` filter and the retention purge. Listing newest first uses the primary key.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Index,
    String,
    Table,
)
from sqlalchemy.dialects.postgresql import JSONB

from tillbridge.store.metadata import metadata
from tillbridge.store.types import BigId, UTCDateTime

__all__ = [
    "ACTION_LEN",
    "ACTOR_LEN",
    "REQUEST_ID_LEN",
    "SUBJECT_ID_LEN",
    "SUBJECT_TYPE_LEN",
    "audit_log",
]

ACTOR_LEN = 200
ACTION_LEN = 100
SUBJECT_TYPE_LEN = 50
SUBJECT_ID_LEN = 200
REQUEST_ID_LEN = 200


# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a table that
# grows by several rows per payment for a year or more.
_BigId = BigId
# none_as_null: a missing payload is SQL NULL, not the JSON text 'null'.
_Payload = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("occurred_at", UTCDateTime(), nullable=False),
    # api key name, "system", "worker" or "operator:<name>"
    Column("actor", String(ACTOR_LEN), nullable=False),
    # dotted event name: "payment.state_changed", "http.outbound", "apikey.created"...
    Column("action", String(ACTION_LEN), nullable=False),
    Column("subject_type", String(SUBJECT_TYPE_LEN), nullable=True),
    Column("subject_id", String(SUBJECT_ID_LEN), nullable=True),
    Column("payload", _Payload, nullable=True),
    Column("request_id", String(REQUEST_ID_LEN), nullable=True),
    Index("ix_audit_log_subject", "subject_type", "subject_id"),
    Index("ix_audit_log_occurred_at", "occurred_at"),
)
