"""Links between Xentral POS events and the payments they started.

One row per inbox event that created a payment. ``inbox_id`` is unique: processing inserts the
payment and this row in one transaction, so an event creates at most one payment however often
it is processed. ``(account, guid)`` is unique when Xentral sends a ``guid``: a re-sent event
with a new timestamp or body for the same POS payment finds the first payment instead of
charging again. ``(account, charge_key)`` is unique too: the semantic key of the money asked for
(:mod:`tillbridge.erp.xentral.charges`), held while the payment may move money and released
(set to NULL) once it ended without moving any. Rows from before migration 0003 that were
themselves duplicates keep a NULL key.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Table

from tillbridge.store.metadata import metadata
from tillbridge.store.types import BigId, UTCDateTime

xentral_pos_payments = Table(
    "xentral_pos_payments",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("inbox_id", BigInteger, nullable=False, unique=True),
    Column("payment_id", String(40), ForeignKey("payments.id"), nullable=False),
    Column("account", String(64), nullable=False),
    Column("register", String(64), nullable=False),
    Column("guid", String(255)),
    Column("document_type", String(20), nullable=False),
    Column("document_number", String(255), nullable=False),
    # What the event asked for: ``purchase`` or ``refund`` of ``amount_minor`` ``currency``.
    Column("operation", String(20)),
    Column("amount_minor", BigInteger),
    Column("currency", String(3)),
    Column("charge_key", String(400)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("uq_xentral_pos_payments_account_guid", "account", "guid", unique=True),
    Index("uq_xentral_pos_payments_account_charge", "account", "charge_key", unique=True),
    Index("ix_xentral_pos_payments_document", "account", "document_type", "document_number"),
    Index("ix_xentral_pos_payments_payment", "payment_id"),
)
