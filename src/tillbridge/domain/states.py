"""Payment states, operation outcomes and the explicit transition table.

The table is the single source of truth for what may happen to a payment. A transition that is
not in it raises :class:`~tillbridge.errors.IllegalTransition`; repeating the state a payment
already has is a no-op, so a duplicate notification is harmless by construction.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class PaymentState(StrEnum):
    CREATED = "created"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    VOIDED = "voided"
    DECLINED = "declined"
    CANCELED = "canceled"
    FAILED = "failed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


class Outcome(StrEnum):
    """How one call to a terminal or provider ended (DESIGN section 3)."""

    SUCCEEDED = "succeeded"  # money moved as asked
    DECLINED = "declined"  # definitive refusal, no money moved
    NOT_SENT = "not_sent"  # provably never reached the other side: safe to retry
    PENDING = "pending"  # accepted, result comes later
    UNKNOWN = "unknown"  # may have happened: recover by asking, never resend


class OperationKind(StrEnum):
    PURCHASE = "purchase"
    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    REFUND = "refund"
    REVERSAL = "reversal"
    VOID = "void"
    CANCEL = "cancel"


S = PaymentState

#: Every legal state change. Read as: from the key, the payment may move to any state in the set.
TRANSITIONS: Final[dict[PaymentState, frozenset[PaymentState]]] = {
    S.CREATED: frozenset(
        {
            S.IN_PROGRESS,
            S.REQUIRES_ACTION,
            S.AUTHORIZED,
            S.CAPTURED,
            S.DECLINED,
            S.CANCELED,
            S.FAILED,
            S.UNKNOWN,
            S.EXPIRED,
        }
    ),
    S.IN_PROGRESS: frozenset(
        {S.REQUIRES_ACTION, S.AUTHORIZED, S.CAPTURED, S.DECLINED, S.CANCELED, S.FAILED, S.UNKNOWN}
    ),
    S.REQUIRES_ACTION: frozenset(
        {
            S.IN_PROGRESS,
            S.AUTHORIZED,
            S.CAPTURED,
            S.DECLINED,
            S.CANCELED,
            S.FAILED,
            S.UNKNOWN,
            S.EXPIRED,
        }
    ),
    # An unknown outcome is only left by recovery (status query) or by an operator's decision.
    S.UNKNOWN: frozenset({S.AUTHORIZED, S.CAPTURED, S.DECLINED, S.FAILED, S.CANCELED}),
    S.AUTHORIZED: frozenset({S.CAPTURED, S.VOIDED, S.EXPIRED, S.UNKNOWN}),
    S.CAPTURED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset(),
    S.VOIDED: frozenset(),
    S.DECLINED: frozenset(),
    S.CANCELED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
}

#: States from which nothing more can happen.
FINAL_STATES: Final = frozenset(s for s, targets in TRANSITIONS.items() if not targets)

#: States in which the payment may still be canceled by the merchant.
CANCELABLE: Final = frozenset({S.CREATED, S.REQUIRES_ACTION})

#: The state a purchase's outcome puts the payment in.
PURCHASE_OUTCOME_STATE: Final[dict[Outcome, PaymentState]] = {
    Outcome.SUCCEEDED: S.CAPTURED,
    Outcome.DECLINED: S.DECLINED,
    Outcome.NOT_SENT: S.FAILED,
    Outcome.PENDING: S.REQUIRES_ACTION,
    Outcome.UNKNOWN: S.UNKNOWN,
}


def can_transition(current: PaymentState, target: PaymentState) -> bool:
    """True if ``current -> target`` is in the table (or a repeat of the same state)."""
    return current == target or target in TRANSITIONS[current]
