"""Domain tables: payments, operations, refunds, API keys and stored idempotent responses."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from tillbridge.store.metadata import metadata
from tillbridge.store.types import BigId as BigId  # re-exported for older table modules
from tillbridge.store.types import UTCDateTime

UtcDateTime = UTCDateTime()

payments = Table(
    "payments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(200), nullable=False),
    Column("connector", String(100), nullable=False),
    Column("state", String(32), nullable=False),
    Column("captured_minor", BigInteger, nullable=False, default=0),
    Column("refunded_minor", BigInteger, nullable=False, default=0),
    Column("pending_refund_minor", BigInteger, nullable=False, default=0),
    Column("failure_reason", Text),
    Column("metadata", JSON, nullable=False),
    Column("version", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_payments_reference", "reference"),
    Index("ix_payments_state_created", "state", "created_at"),
    Index("ix_payments_created_id", "created_at", "id"),
)

operations = Table(
    "operations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("payment_id", String(40), ForeignKey("payments.id"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # What the counterpart echoes back (trace number, session id, request id): committed before
    # the call is sent so an unknown outcome can be recovered by asking.
    Column("echo_id", String(100), nullable=False),
    Column("idempotency_key", String(255)),
    Column("outcome", String(20)),
    # Persist before send: set in the transaction that commits the operation as being sent, so a
    # job that comes back after a crash knows it may have reached the counterpart.
    Column("sent_at", UtcDateTime),
    Column("recovery_attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("detail", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_operations_payment", "payment_id"),
    UniqueConstraint("payment_id", "echo_id", name="uq_operations_payment_echo"),
)

refunds = Table(
    "refunds",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("payment_id", String(40), ForeignKey("payments.id"), nullable=False),
    Column("operation_id", String(40), ForeignKey("operations.id"), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("outcome", String(20)),
    Column("reason", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_refunds_payment", "payment_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False),
    # Public lookup part of the key (``tb_<prefix>_<secret>``); the secret is stored hashed only.
    Column("prefix", String(32), nullable=False, unique=True),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("scopes", String(400), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
    Column("last_used_at", UtcDateTime),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # Keys are scoped to the API key that used them, like Stripe's: two clients never collide.
    Column("api_key_id", String(40), nullable=False),
    Column("key", String(255), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path", String(300), nullable=False),
    Column("request_hash", LargeBinary(32), nullable=False),
    # NULL while the first request is still running; then the response that is replayed.
    Column("status_code", Integer),
    Column("response_body", LargeBinary),
    Column("locked_until", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    UniqueConstraint("api_key_id", "key", name="uq_idempotency_keys_api_key_key"),
    Index("ix_idempotency_keys_expires", "expires_at"),
)
