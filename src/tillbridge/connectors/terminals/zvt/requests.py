"""What :class:`~.client.ZvtTerminal` is asked to do: one request type per ZVT money command.

The ZVT connector (:mod:`.connector`) builds these from the engine's
:class:`~tillbridge.payments.contract.OperationRequest`; tests and tools use them directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from tillbridge.domain.states import OperationKind
from tillbridge.money import Money
from tillbridge.payments.contract import EventCallback


@dataclass(frozen=True, slots=True)
class PurchaseRequest:
    """Charge ``amount``. ``reference`` is the engine's operation id, for logs and receipts."""

    amount: Money
    reference: str
    on_event: EventCallback | None = None


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Pay ``amount`` back to a card presented at the terminal (not tied to an earlier sale)."""

    amount: Money
    reference: str
    on_event: EventCallback | None = None


@dataclass(frozen=True, slots=True)
class ReversalRequest:
    """Undo an earlier sale of this terminal, identified by what its result carried.

    ``receipt_number`` and/or ``echo_id`` come from the original result; ``amount`` is the
    original amount (terminals check it where they can).
    """

    amount: Money
    reference: str
    receipt_number: str | None = None
    echo_id: str | None = None
    on_event: EventCallback | None = None


@dataclass(frozen=True, slots=True)
class StatusQuery:
    """What the bridge knows about a transaction whose outcome is unknown.

    ``amount`` and ``kind`` were persisted before sending. ``echo_id`` / ``receipt_number`` are
    set if the terminal reported them before the link failed. ``previous_echo_id`` is the trace
    of the last transaction the bridge saw on this terminal *before* this one was sent: it lets
    a terminal that can only repeat "the last transaction" tell whether that is ours.
    """

    reference: str
    kind: OperationKind
    amount: Money
    echo_id: str | None = None
    receipt_number: str | None = None
    previous_echo_id: str | None = None
