"""Outgoing event webhooks: events, one delivery per (event, subscriber), every attempt, and
the persisted state of subscribers (config says who they are; the table says who is disabled).

``webhook_events.body`` holds the exact bytes that are signed and sent, so every attempt and
every manual redelivery sends the same message with the same ``webhook-id``.
``source_key`` (unique) makes the listener idempotent: one event per payment state change.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
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

# Delivery statuses.
PENDING: Final = "pending"  # first attempt not made yet
RETRYING: Final = "retrying"  # an attempt failed; the next one is scheduled
SUCCEEDED: Final = "succeeded"
DEAD: Final = "dead"  # the retry schedule ran out
SKIPPED: Final = "skipped"  # the subscriber is disabled; redeliver after enabling it

DELIVERY_STATUSES: Final = (PENDING, RETRYING, SUCCEEDED, DEAD, SKIPPED)

_BigId = BigId
_Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(40), primary_key=True),  # msg_...: the webhook-id header
    Column("type", String(100), nullable=False),
    Column("subject_type", String(50), nullable=False),
    Column("subject_id", String(100), nullable=False),
    Column("source_key", String(200), nullable=False, unique=True),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_webhook_events_subject", "subject_type", "subject_id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(40), ForeignKey("webhook_events.id"), nullable=False),
    Column("subscriber", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("next_attempt_at", UTCDateTime),
    Column("job_id", BigInteger),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("event_id", "subscriber", name="uq_webhook_deliveries_event_subscriber"),
    Index("ix_webhook_deliveries_status_id", "status", "id"),
    Index("ix_webhook_deliveries_subscriber_id", "subscriber", "id"),
)

webhook_delivery_attempts = Table(
    "webhook_delivery_attempts",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column(
        "delivery_id",
        BigId,
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer),
    Column("duration_ms", Float, nullable=False),
    # "succeeded", "failed", "not_sent", "unknown", "gone"
    Column("outcome", String(16), nullable=False),
    Column("error", Text),
    Index("ix_webhook_delivery_attempts_delivery", "delivery_id", "id"),
)

webhook_subscriber_state = Table(
    "webhook_subscriber_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("disabled_at", UTCDateTime),
    Column("disabled_reason", Text),
    Column("updated_at", UTCDateTime, nullable=False),
    # Free-form operator-visible details ({"status": 410, "url": ...}).
    Column("detail", _Json),
)
