"""The payment aggregate, its operations (attempts) and refunds.

A :class:`Payment` is the intent to move an amount for a merchant reference through one
connector. Each call made to a terminal or provider on its behalf is an :class:`Operation`, which
carries the identifier the counterpart will echo (persisted before the call is sent) and, once
known, its :class:`~tillbridge.domain.states.Outcome`. Refunds are operations too, plus a
:class:`Refund` record so several partial refunds can never exceed what was captured.

Everything here is pure: methods change the in-memory aggregate and return what changed; the
store persists it with optimistic concurrency (``version``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tillbridge.domain.states import (
    CANCELABLE,
    PURCHASE_OUTCOME_STATE,
    OperationKind,
    Outcome,
    PaymentState,
    can_transition,
)
from tillbridge.errors import IllegalTransition, RefundExceedsCapture, ValidationError
from tillbridge.money import Money

_REFUND_STATES = frozenset({PaymentState.PARTIALLY_REFUNDED, PaymentState.REFUNDED})


def new_id(prefix: str) -> str:
    """A random, URL-safe, sortable-enough identifier such as ``pay_3kTq...``."""
    return f"{prefix}_{secrets.token_urlsafe(15)}"


@dataclass(slots=True)
class Operation:
    """One attempt to make a counterpart do something for a payment.

    ``echo_id`` is what the counterpart will echo back (session id, trace number, request id):
    it is committed before the call is sent, so an unknown outcome can be recovered by asking.
    """

    id: str
    payment_id: str
    kind: OperationKind
    amount: Money
    echo_id: str
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    outcome: Outcome | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: When it was committed as sent (persist before send); None while it has not been sent.
    sent_at: datetime | None = None
    #: Status queries made to recover an unknown outcome.
    recovery_attempts: int = 0

    def record(self, outcome: Outcome, now: datetime, **detail: Any) -> bool:
        """Record the outcome; returns False if it was already recorded the same way.

        A definitive outcome (succeeded, declined) is final: a different one later is a
        conflict, not an update. ``unknown`` and ``pending`` may be resolved into anything.
        """
        if self.outcome == outcome:
            return False
        if self.outcome in (Outcome.SUCCEEDED, Outcome.DECLINED, Outcome.NOT_SENT):
            raise IllegalTransition(
                f"operation {self.id} already ended {self.outcome}, cannot become {outcome}"
            )
        self.outcome = outcome
        self.detail.update({k: v for k, v in detail.items() if v is not None})
        self.updated_at = now
        return True


@dataclass(slots=True)
class Refund:
    """A refund of part or all of a captured payment; ``outcome`` None while in flight."""

    id: str
    payment_id: str
    amount: Money
    operation_id: str
    created_at: datetime
    outcome: Outcome | None = None
    reason: str | None = None


@dataclass(slots=True)
class Payment:
    """The payment aggregate. Mutate it only through its methods."""

    id: str
    amount: Money
    reference: str
    connector: str
    state: PaymentState
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    captured_minor: int = 0
    refunded_minor: int = 0
    #: Refund amounts in flight (requested, outcome not yet known). Counted against the limit.
    pending_refund_minor: int = 0
    failure_reason: str | None = None
    version: int = 0

    @property
    def currency(self) -> str:
        return self.amount.currency

    # state changes -----------------------------------------------------------------------------

    def transition(self, target: PaymentState, now: datetime, *, reason: str | None = None) -> bool:
        """Move to ``target``. Returns False for a repeat (a no-op); raises if illegal."""
        if target in _REFUND_STATES:
            # These states are derived from refund amounts; only settle_refund may set them.
            if self.state == target:
                return False
            raise IllegalTransition(
                f"payment {self.id} becomes {target} only through settled refunds",
                current=str(self.state),
                target=str(target),
            )
        return self._move(target, now, reason=reason)

    def _move(self, target: PaymentState, now: datetime, *, reason: str | None = None) -> bool:
        if self.state == target:
            return False
        if not can_transition(self.state, target):
            raise IllegalTransition(
                f"payment {self.id} cannot go from {self.state} to {target}",
                current=str(self.state),
                target=str(target),
            )
        self.state = target
        self.updated_at = now
        if target in (PaymentState.AUTHORIZED, PaymentState.CAPTURED):
            # A payment that went through has no failure, whatever an earlier step reported
            # (an unknown outcome's "timeout" is not a reason once recovery found it approved).
            self.failure_reason = None
        elif reason is not None:
            self.failure_reason = reason
        if target == PaymentState.CAPTURED and self.captured_minor == 0:
            self.captured_minor = self.amount.minor
        return True

    def apply_purchase_outcome(
        self, outcome: Outcome, now: datetime, *, reason: str | None = None
    ) -> bool:
        """Apply a purchase operation's outcome to the payment's state."""
        return self.transition(PURCHASE_OUTCOME_STATE[outcome], now, reason=reason)

    def cancel(self, now: datetime, *, reason: str = "canceled by merchant") -> bool:
        """Cancel before any money moved. A repeat cancel is a no-op."""
        if self.state == PaymentState.CANCELED:
            return False
        if self.state not in CANCELABLE:
            raise IllegalTransition(
                f"payment {self.id} is {self.state} and can no longer be canceled",
                code="not_cancelable",
                current=str(self.state),
            )
        return self.transition(PaymentState.CANCELED, now, reason=reason)

    # refunds -----------------------------------------------------------------------------------

    @property
    def refundable(self) -> Money:
        """What may still be refunded: captured minus refunded minus refunds in flight."""
        left = self.captured_minor - self.refunded_minor - self.pending_refund_minor
        return Money(left, self.currency)

    def request_refund(
        self, amount: Money, refund_id: str, operation_id: str, now: datetime
    ) -> Refund:
        """Reserve ``amount`` for a new refund. Raises if it would exceed what was captured."""
        if self.state not in (PaymentState.CAPTURED, PaymentState.PARTIALLY_REFUNDED):
            raise IllegalTransition(
                f"payment {self.id} is {self.state}; only captured payments refund"
            )
        if amount.currency != self.currency:
            raise ValidationError(f"refund currency {amount.currency} differs from {self.currency}")
        if not amount.is_positive():
            raise ValidationError("refund amount must be positive")
        if amount > self.refundable:
            raise RefundExceedsCapture(
                f"refund of {amount} exceeds the refundable {self.refundable}",
                refundable=self.refundable.minor,
            )
        self.pending_refund_minor += amount.minor
        self.updated_at = now
        return Refund(refund_id, self.id, amount, operation_id, now)

    def settle_refund(self, refund: Refund, outcome: Outcome, now: datetime) -> bool:
        """Apply a refund's final outcome. Repeating the same outcome is a no-op.

        ``unknown`` and ``pending`` keep the amount reserved: a refund that may have happened
        must not be offered again until recovery settles it.
        """
        if refund.outcome == outcome:
            return False
        if refund.outcome in (Outcome.SUCCEEDED, Outcome.DECLINED, Outcome.NOT_SENT):
            raise IllegalTransition(f"refund {refund.id} already ended {refund.outcome}")
        if outcome in (Outcome.UNKNOWN, Outcome.PENDING):
            refund.outcome = outcome
            return True
        refund.outcome = outcome
        self.pending_refund_minor -= refund.amount.minor
        if outcome == Outcome.SUCCEEDED:
            self.refunded_minor += refund.amount.minor
            full = self.refunded_minor >= self.captured_minor
            target = PaymentState.REFUNDED if full else PaymentState.PARTIALLY_REFUNDED
            self._move(target, now)
        self.updated_at = now
        return True
