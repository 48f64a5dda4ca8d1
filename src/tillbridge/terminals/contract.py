"""The terminal connector contract: what every card-terminal integration offers the engine.

A connector drives one physical terminal (ZVT over TCP or serial, Linkly, a JSON terminal). The
engine owns persistence, the job queue and the payment state machine; a connector owns the wire.
The contract is deliberately small:

* ``purchase`` / ``refund`` / ``reversal`` start one money movement and stream
  :class:`TerminalEvent` objects (display texts, prompts, receipt lines) while it runs;
* ``cancel`` asks the terminal to abort the running transaction;
* ``query_status`` recovers the outcome of a transaction whose answer was lost, using the
  identifiers the engine persisted before sending. It asks; it never sends the sale again;
* ``settle`` closes the terminal's day and reports totals;
* ``capabilities`` says which of the above this terminal really supports.

Every money call ends in exactly one :class:`~tillbridge.domain.states.Outcome` (DESIGN §3;
the one enum of the bridge, re-exported here). Terminal and transport
failures are *results*, not exceptions: a refused connection is ``not_sent``, a link lost after
the request went out is ``unknown``. Connectors raise only for requests that can never succeed
as asked (:class:`~tillbridge.errors.ValidationError`) and for a terminal that is busy with
another session (:class:`~tillbridge.errors.TerminalBusy`, nothing was started, retry later).

Card data: a result carries at most a masked PAN (first 6 and last 4 digits, see
:func:`mask_pan`). Track data, CVV, PIN blocks and full PANs never leave the connector.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from tillbridge.domain.states import Outcome
from tillbridge.money import Money


class TransactionKind(StrEnum):
    PURCHASE = "purchase"
    REFUND = "refund"
    REVERSAL = "reversal"


class EventKind(StrEnum):
    DISPLAY = "display"
    """Text the terminal shows (or would show) to the customer or cashier."""
    PROMPT = "prompt"
    """The terminal waits for someone to act (insert card, enter PIN)."""
    RECEIPT_LINE = "receipt_line"
    """One line of a receipt, with :attr:`TerminalEvent.receipt` telling whose copy."""
    STATE = "state"
    """A protocol milestone (command accepted, result received, completed)."""


class ReceiptSide(StrEnum):
    CUSTOMER = "customer"
    MERCHANT = "merchant"


@dataclass(frozen=True, slots=True)
class TerminalEvent:
    """Something the terminal reported while a transaction runs.

    ``code`` is the protocol's own status code when there is one (e.g. a ZVT intermediate
    status byte), for logs and dashboards; ``text`` is always human readable.
    """

    kind: EventKind
    text: str
    receipt: ReceiptSide | None = None
    code: int | None = None


EventCallback = Callable[[TerminalEvent], Awaitable[None]]
"""Receives events while a call runs. It must be quick and must not raise: a connector logs
and ignores a failing callback rather than abandon a transaction the terminal is running."""


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

    ``receipt_number`` and/or ``echo_id`` come from the original :class:`TerminalResult`;
    ``amount`` is the original amount (terminals check it where they can).
    """

    amount: Money
    reference: str
    receipt_number: str | None = None
    echo_id: str | None = None
    on_event: EventCallback | None = None


@dataclass(frozen=True, slots=True)
class StatusQuery:
    """What the engine knows about a transaction whose outcome is unknown.

    ``amount`` and ``kind`` were persisted before sending. ``echo_id`` / ``receipt_number`` are
    set if the terminal reported them before the link failed. ``previous_echo_id`` is the echo
    id of the last transaction the bridge saw on this terminal *before* this one was sent: it
    lets a connector that can only ask for "the last transaction" tell whether that is ours.
    """

    reference: str
    kind: TransactionKind
    amount: Money
    echo_id: str | None = None
    receipt_number: str | None = None
    previous_echo_id: str | None = None


@dataclass(frozen=True, slots=True)
class TerminalCapabilities:
    """What a terminal connector can do; the engine and the UI consult these, never guess."""

    can_abort: bool = False
    """``cancel`` can stop a running transaction."""
    can_refund: bool = False
    can_reverse: bool = False
    can_query_last: bool = False
    """``query_status`` works, but only for the terminal's last transaction."""
    can_query_by_reference: bool = False
    """``query_status`` finds any recent transaction by its identifiers."""
    can_settle: bool = False
    supports_tip: bool = False
    delivers_receipts: bool = False
    """Results carry receipt lines (the terminal prints through the bridge)."""


@dataclass(frozen=True, slots=True)
class TerminalResult:
    """The end of one terminal call.

    Identifiers are strings exactly as the terminal reports them (ZVT trace ``"000123"``,
    receipt ``"0042"``). ``echo_id`` is the identifier the engine should store to recover this
    transaction later (for ZVT the trace number). ``detail`` explains an outcome the terminal
    did not state itself (why ``unknown`` or ``not_sent``).
    """

    outcome: Outcome
    kind: TransactionKind
    amount: Money | None = None
    reference: str | None = None
    masked_pan: str | None = None
    card_type: str | None = None
    card_name: str | None = None
    trace_number: str | None = None
    receipt_number: str | None = None
    terminal_id: str | None = None
    vu_number: str | None = None
    auth_code: str | None = None
    result_code: str | None = None
    result_text: str | None = None
    customer_receipt: tuple[str, ...] = ()
    merchant_receipt: tuple[str, ...] = ()
    echo_id: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        # Defence in depth: whatever a terminal sends, a result never holds more than 6+4 digits.
        if self.masked_pan is not None:
            object.__setattr__(self, "masked_pan", mask_pan(self.masked_pan))


@dataclass(frozen=True, slots=True)
class SchemeTotal:
    """Totals of one card scheme in a settlement."""

    scheme: str
    count: int
    total: Money


@dataclass(frozen=True, slots=True)
class SettlementResult:
    """The end of day: what the terminal submitted, per scheme and in total."""

    outcome: Outcome
    total: Money | None = None
    count: int | None = None
    schemes: tuple[SchemeTotal, ...] = ()
    first_receipt_number: str | None = None
    last_receipt_number: str | None = None
    trace_number: str | None = None
    result_code: str | None = None
    result_text: str | None = None
    receipt: tuple[str, ...] = ()
    detail: str | None = None


PersistResult = Callable[[TerminalResult], Awaitable[None]]
"""The engine's hook at a protocol's decision point (e.g. before acknowledging a ZVT
Status-Information). It must durably store the result and return; raising tells the connector
the bridge does not accept the transaction (the connector then refuses it where the protocol
allows, and re-raises)."""


@runtime_checkable
class TerminalConnector(Protocol):
    """One terminal, driven by one session at a time.

    Implementations must:

    * return a :class:`TerminalResult` for every outcome, including transport failures;
    * return ``not_sent`` only when the request provably never reached the terminal;
    * return ``unknown`` whenever it may have reached the terminal and no definitive answer
      arrived, and never send that request again by themselves;
    * carry at most a masked PAN;
    * raise :class:`~tillbridge.errors.TerminalBusy` (nothing started) when the terminal or
      this connector is already running another session's transaction.
    """

    @property
    def capabilities(self) -> TerminalCapabilities: ...

    async def purchase(self, req: PurchaseRequest) -> TerminalResult:
        """Charge the card. Not idempotent: every call may move money."""
        ...

    async def refund(self, req: RefundRequest) -> TerminalResult:
        """Pay money back to a card. Not idempotent."""
        ...

    async def reversal(self, req: ReversalRequest) -> TerminalResult:
        """Undo an earlier sale. Terminals refuse a second reversal of the same sale, so a
        repeated call is harmless but answered ``declined``."""
        ...

    async def cancel(self) -> bool:
        """Ask the terminal to abort the running transaction. True if the request was
        delivered; the running call's own result says whether the abort took effect.
        Idempotent."""
        ...

    async def query_status(self, query: StatusQuery) -> TerminalResult:
        """Resolve an ``unknown`` outcome by asking the terminal. Never moves money and never
        resends the original request; idempotent. Returns ``succeeded`` or ``declined`` when
        the terminal's records prove it, else ``unknown`` (with ``detail``)."""
        ...

    async def settle(self) -> SettlementResult:
        """Close the terminal's day and report its totals. Not idempotent on the terminal (a
        second call closes an empty batch)."""
        ...

    async def close(self) -> None:
        """Release the link. Idempotent."""
        ...


_MASK = "*"


def mask_pan(pan: str) -> str:
    """Mask a card number so at most the first 6 and the last 4 digits remain visible.

    Characters that are not digits count as already masked and become ``*``. Numbers shorter
    than 13 characters keep at most their last 4 digits (a 6+4 rule would reveal almost all of
    them); 4 characters or fewer are masked entirely.
    """
    text = "".join(ch for ch in pan if not ch.isspace())
    n = len(text)
    out = []
    for i, ch in enumerate(text):
        if n >= 13:
            visible = i < 6 or i >= n - 4
        else:
            visible = n > 4 and i >= n - 4
        out.append(ch if visible and ch.isdigit() else _MASK)
    return "".join(out)


__all__ = [
    "EventCallback",
    "EventKind",
    "Outcome",
    "PersistResult",
    "PurchaseRequest",
    "ReceiptSide",
    "RefundRequest",
    "ReversalRequest",
    "SchemeTotal",
    "SettlementResult",
    "StatusQuery",
    "TerminalCapabilities",
    "TerminalConnector",
    "TerminalEvent",
    "TerminalResult",
    "TransactionKind",
    "mask_pan",
]
