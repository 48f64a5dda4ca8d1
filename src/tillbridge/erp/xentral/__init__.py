"""Xentral: POS card-payment webhooks (mapping) and payment write-back (Documents API v3)."""

from __future__ import annotations

from tillbridge.erp.xentral.mapping import (
    CARD_PAYMENT_EVENTS,
    DocumentType,
    PaymentKind,
    TerminalMode,
    UnsupportedXentralEvent,
    XentralCardPayment,
    XentralEvent,
    parse_event,
    parse_event_bytes,
)
from tillbridge.erp.xentral.writeback import InvoicePaymentStatus, WritebackResult, XentralWriteback
from tillbridge.errors import XentralUnavailable

__all__ = [
    "CARD_PAYMENT_EVENTS",
    "DocumentType",
    "InvoicePaymentStatus",
    "PaymentKind",
    "TerminalMode",
    "UnsupportedXentralEvent",
    "WritebackResult",
    "XentralCardPayment",
    "XentralEvent",
    "XentralUnavailable",
    "XentralWriteback",
    "parse_event",
    "parse_event_bytes",
]
