"""The payment as JSON: the one shape the payments API and the outgoing webhooks both show.

Integrators see the same object whether they poll ``GET /v1/payments/{id}`` or receive a
``payment.succeeded`` webhook; keeping it in one function keeps the two from drifting apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tillbridge.domain.payments import Payment


def iso_utc(value: datetime) -> str:
    """``2025-01-31T12:00:00.123456Z``: UTC with a ``Z``, microseconds kept."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payment_dict(p: Payment) -> dict[str, Any]:
    """The JSON object for ``p`` (field order as documented in docs/api.md)."""
    return {
        "id": p.id,
        "state": str(p.state),
        "amount": p.amount.minor,
        "currency": p.currency,
        "reference": p.reference,
        "connector": p.connector,
        "metadata": p.metadata,
        "captured_amount": p.captured_minor,
        "refunded_amount": p.refunded_minor,
        "failure_reason": p.failure_reason,
        "created_at": iso_utc(p.created_at),
        "updated_at": iso_utc(p.updated_at),
    }
