"""Tables of the terminal engine: a payment's terminal side, its events, link state, settlements.

* ``terminal_payments``: one row per payment run on a terminal. Written in the transaction that
  creates the payment; before anything is sent it gets ``previous_echo_id`` (the last trace the
  bridge saw on this terminal) and ``sent_at``; the ``persist_result`` hook fills in the result
  (trace, receipt number, masked PAN, receipts) before the terminal's result is acknowledged.
* ``terminal_events``: what happened while it ran (display texts, prompts, receipt lines, state
  changes), replayed by ``GET /v1/payments/{id}/events``.
* ``terminal_state``: per terminal: last contact, last trace/receipt, the last payment sent.
* ``terminal_settlements``: end-of-day requests and the totals the terminal reported.

No card data beyond a masked PAN (first 6 / last 4) is ever stored here.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from tillbridge.store.metadata import metadata
from tillbridge.store.types import BigId, UTCDateTime

UtcDateTime = UTCDateTime()

terminal_payments = Table(
    "terminal_payments",
    metadata,
    Column("payment_id", String(40), ForeignKey("payments.id"), primary_key=True),
    Column("operation_id", String(40), nullable=False),
    Column("terminal", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    # Recovery evidence, committed before the request goes out: the terminal assigns the trace
    # number, so what we can persist is the last trace it gave us before this payment.
    Column("previous_echo_id", String(16)),
    Column("previous_receipt", String(16)),
    Column("sent_at", UtcDateTime),
    # A queued payment that has not started by then is canceled (the terminal stayed busy).
    Column("start_by", UtcDateTime, nullable=False),
    # The terminal's answer, stored by the persist_result hook before it is acknowledged.
    Column("result_outcome", String(16)),
    Column("result_at", UtcDateTime),
    Column("trace_number", String(16)),
    Column("receipt_number", String(16)),
    Column("result_code", String(4)),
    Column("result_text", Text),
    Column("masked_pan", String(32)),
    Column("card_type", String(64)),
    Column("card_name", String(64)),
    Column("auth_code", String(16)),
    Column("terminal_tid", String(16)),
    Column("customer_receipt", JSON, nullable=False),
    Column("merchant_receipt", JSON, nullable=False),
    Column("detail", Text),
    Column("recovery_attempts", Integer, nullable=False, default=0),
    Column("needs_operator", Boolean, nullable=False, default=False),
    Column("cancel_requested_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_terminal_payments_terminal_created", "terminal", "created_at"),
)

terminal_events = Table(
    "terminal_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("payment_id", String(40), ForeignKey("payments.id"), nullable=False),
    Column("terminal", String(64), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("receipt", String(10)),
    Column("code", Integer),
    Column("data", JSON),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_terminal_events_payment_id", "payment_id", "id"),
)

terminal_state = Table(
    "terminal_state",
    metadata,
    Column("terminal", String(64), primary_key=True),
    Column("online", Boolean),
    Column("last_contact_at", UtcDateTime),
    Column("last_error", Text),
    Column("terminal_tid", String(16)),
    Column("last_trace", String(16)),
    Column("last_receipt", String(16)),
    # The last payment sent to this terminal: the only one whose outcome a "repeat the last
    # transaction" query (ZVT 06 20) can still prove.
    Column("last_payment_id", String(40)),
    # Its outcome: "unknown" while recovery may still settle it (the next payment on this
    # terminal first asks about it), "operator" once handed over.
    Column("last_outcome", String(16)),
    # True when the bridge's last_trace may be stale (an outcome stayed unknown): the next
    # payment asks the terminal for its last transaction before sending.
    Column("needs_probe", Boolean, nullable=False, default=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

terminal_settlements = Table(
    "terminal_settlements",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("terminal", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_minor", BigInteger),
    Column("count", Integer),
    Column("schemes", JSON, nullable=False),
    Column("first_receipt", String(16)),
    Column("last_receipt", String(16)),
    Column("trace_number", String(16)),
    Column("result_code", String(4)),
    Column("result_text", Text),
    Column("receipt", JSON, nullable=False),
    Column("detail", Text),
    Column("requested_by", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Index("ix_terminal_settlements_terminal_created", "terminal", "created_at"),
)
