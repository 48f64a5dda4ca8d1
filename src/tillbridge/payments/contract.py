"""The one connector contract: what the payment engine asks of every way money moves.

A *connector* is one configured counterpart that moves money: a card terminal on the shop floor
(family ``card_present``: ZVT, the sandbox terminal) or an online provider or sandbox (family
``online``: the ``fake`` sandbox). The engine (:mod:`tillbridge.payments.engine`) picks it by
name, checks its :class:`Capabilities` *before* it calls (a capability a connector lacks is a
clear 4xx, never an attempt that fails late), and has committed the :class:`OperationRequest`
(with its ``echo_id``) before any call is made: persist before you send.

What a connector must do:

* end every money call (``purchase``, ``refund``, ``reverse``) in a :class:`ConnectorResult`
  whose ``outcome`` is one of the five of DESIGN section 3, *including* transport failures:
  a refused connection is ``not_sent``, a link lost after the request went out is ``unknown``;
* report ``not_sent`` only when the request provably never reached the counterpart;
* answer :meth:`Connector.query` from the counterpart's own records, with the evidence the
  engine persisted (``OperationRequest.evidence``), so an ``unknown`` outcome can be resolved;
  a query that could not reach the counterpart says so with ``reached=False``;
* call ``call.persist(result)`` at the protocol's decision point when it has one (ZVT: before the
  Status-Information is acknowledged) and refuse the result where the protocol allows if it
  raises;
* raise :class:`~tillbridge.errors.TerminalBusy` (nothing started) when the counterpart is
  already busy with another session, and :class:`~tillbridge.errors.ValidationError` from
  :meth:`Connector.validate` for a request it can never run as asked.

What a connector must never do:

* send a money request again on its own after an unknown outcome: only the engine decides, and
  it only ever asks (:meth:`Connector.query`);
* return, store or log card data beyond a masked PAN (first 6 and last 4 digits at most, see
  :func:`~tillbridge.observability.cards.mask_pan`); never track data, CVV or PIN blocks.

Idempotency: ``purchase``, ``refund`` and ``reverse`` are not idempotent (every call may move
money; the engine never repeats them after sending). ``query``, ``probe``, ``cancel`` and
``close`` must be safe to repeat. ``settle`` closes a day on the counterpart and is not.

The card-present family runs every call of a terminal under that terminal's lease (one
conversation at a time, see :mod:`tillbridge.connectors.terminals.sessions`) and streams
:class:`ConnectorEvent` objects through ``call.emit``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

from tillbridge.domain.states import OperationKind, Outcome
from tillbridge.errors import NotSupported
from tillbridge.money import Money
from tillbridge.observability.cards import mask_pan

#: How a result says the counterpart refused as busy (another session holds it; nothing started).
BUSY_PREFIX: Final = "terminal busy"


class Family(StrEnum):
    """The two connector families (DESIGN section 4)."""

    CARD_PRESENT = "card_present"
    """A terminal: a lease on its link, events while it runs, input, end of day."""
    ONLINE = "online"
    """A provider or sandbox: may need the customer, notifies later, may capture later."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a connector can do: predicates the engine checks before it calls.

    Anything left ``False`` (or empty) is refused up front with
    :class:`~tillbridge.errors.NotSupported` (422, code ``not_supported``).
    """

    refund: bool = False
    """Refund an earlier captured payment of this connector (``POST /v1/payments/{id}/refunds``)."""
    partial_refund: bool = False
    """Refund less than what was captured, possibly several times."""
    standalone_refund: bool = False
    """Pay an amount back to a card presented at the terminal (not tied to an earlier sale)."""
    deferred_capture: bool = False
    partial_capture: bool = False
    void: bool = False
    reversal: bool = False
    """Undo an earlier sale of the open batch (ZVT 06 30)."""
    reversal_window: timedelta | None = None
    """How long after a sale a reversal is still possible, when the counterpart limits it."""
    query: bool = True
    """A status query can recover an unknown outcome."""
    query_last_only: bool = False
    """The status query can only tell about the counterpart's *last* transaction (ZVT Repeat
    Receipt): the engine asks before the next sale replaces the answer."""
    cancel: bool = False
    """A running operation can be aborted from the bridge."""
    input: frozenset[str] = frozenset()
    """Operator inputs the connector can deliver to a running operation (``abort``, ...)."""
    events: bool = False
    """Display texts, prompts and receipt lines are streamed while an operation runs."""
    settle: bool = False
    """End of day with totals."""
    receipts: bool = False
    """Results carry receipt lines (the counterpart prints through the bridge)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view for the API and ``tillbridge connectors list``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, timedelta):
                value = int(value.total_seconds())
            out[f.name] = value
        return out

    def names(self) -> list[str]:
        """The capabilities that are on, by name (for tables)."""
        return [k for k, v in self.as_dict().items() if v not in (False, None, [])]


@dataclass(frozen=True, slots=True)
class Evidence:
    """Identifiers recorded for one operation, which recovery asks about.

    ``previous_trace_number`` is persisted *before* sending on terminals that assign the trace
    themselves (ZVT): the last trace the bridge saw there. The others are what the counterpart
    reported, possibly before the answer was lost.
    """

    provider_reference: str | None = None
    trace_number: str | None = None
    receipt_number: str | None = None
    previous_trace_number: str | None = None


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """What the engine asks a connector to do, already committed, with the id to echo."""

    operation_id: str
    payment_id: str
    kind: OperationKind
    amount: Money
    reference: str
    echo_id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    evidence: Evidence = Evidence()
    """What is known about *this* operation (for :meth:`Connector.query`)."""
    original: Evidence | None = None
    """For a refund, reversal, capture or void of an earlier operation: that operation's."""


class EventKind(StrEnum):
    DISPLAY = "display"
    """Text the terminal shows (or would show) to the customer or cashier."""
    PROMPT = "prompt"
    """The counterpart waits for someone to act (insert card, enter PIN)."""
    RECEIPT_LINE = "receipt_line"
    """One line of a receipt, with :attr:`ConnectorEvent.receipt` telling whose copy."""
    STATE = "state"
    """A protocol milestone (command accepted, result received, completed)."""


class ReceiptSide(StrEnum):
    CUSTOMER = "customer"
    MERCHANT = "merchant"


@dataclass(frozen=True, slots=True)
class ConnectorEvent:
    """Something the counterpart reported while an operation runs.

    ``code`` is the protocol's own status code when there is one (a ZVT intermediate status
    byte), for logs and dashboards; ``text`` is always human readable.
    """

    kind: EventKind
    text: str
    receipt: ReceiptSide | None = None
    code: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectorResult:
    """How one call ended, with the evidence the counterpart returned.

    Identifiers are strings exactly as the counterpart reports them (ZVT trace ``"000123"``).
    ``echo_id`` is what the engine stores to recover this transaction later (ZVT: the trace).
    ``detail`` explains an outcome the counterpart did not state itself (why ``unknown`` or
    ``not_sent``); ``result_text`` is the counterpart's own wording. ``reached`` is ``False``
    only for a query that could not ask the counterpart at all (asking again later may help).
    """

    outcome: Outcome
    kind: OperationKind | None = None
    amount: Money | None = None
    reference: str | None = None
    provider_reference: str | None = None
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
    reached: bool = True

    def __post_init__(self) -> None:
        # Defence in depth: whatever a counterpart sends, a result never holds more than 6+4.
        if self.masked_pan is not None:
            object.__setattr__(self, "masked_pan", mask_pan(self.masked_pan))

    @property
    def reason(self) -> str | None:
        """Why it did not simply succeed, in words: the counterpart's text, else our detail."""
        return self.result_text or self.detail

    def evidence(self) -> Evidence:
        return Evidence(
            provider_reference=self.provider_reference,
            trace_number=self.trace_number,
            receipt_number=self.receipt_number,
        )


@dataclass(frozen=True, slots=True)
class SchemeTotal:
    """Totals of one card scheme in a settlement."""

    scheme: str
    count: int
    total: Money


@dataclass(frozen=True, slots=True)
class SettlementResult:
    """The end of day: what the counterpart submitted, per scheme and in total."""

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


@dataclass(frozen=True, slots=True)
class Probe:
    """What a ``query_last_only`` counterpart says its last transaction was.

    ``reached`` False: it could not be asked (nothing is known). ``trace`` None with ``reached``
    True: it has no last transaction.
    """

    reached: bool
    trace: str | None = None
    receipt: str | None = None
    detail: str | None = None


EventCallback = Callable[[ConnectorEvent], Awaitable[None]]
"""Receives events while a call runs. Quick and never raising: a connector logs and ignores a
failing callback rather than abandon a transaction the counterpart is running."""

PersistResult = Callable[[ConnectorResult], Awaitable[None]]
"""The engine's hook at a protocol's decision point. It durably stores the result and returns;
raising tells the connector the bridge does not accept the transaction (the connector then
refuses it where the protocol allows, and re-raises)."""


class Call(Protocol):
    """What the engine hands a connector for one money call."""

    async def emit(self, event: ConnectorEvent) -> None:
        """Report an event (see :data:`EventCallback`)."""
        ...

    async def persist(self, result: ConnectorResult) -> None:
        """Store the result before acknowledging it (see :data:`PersistResult`)."""
        ...


class NoCall:
    """A :class:`Call` that drops events and has nothing to persist (online connectors)."""

    async def emit(self, event: ConnectorEvent) -> None:
        return None

    async def persist(self, result: ConnectorResult) -> None:
        return None


@runtime_checkable
class Connector(Protocol):
    """One configured counterpart that moves money (see the module docstring).

    ``problem`` says why the connector cannot be used (a secret that did not resolve): the
    engine then refuses new payments on it with that reason, while everything else keeps
    working.
    """

    @property
    def name(self) -> str: ...

    @property
    def family(self) -> Family: ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def problem(self) -> str | None: ...

    def validate(self, kind: OperationKind, amount: Money) -> None:
        """Raise :class:`~tillbridge.errors.ValidationError` for a request this connector can
        never run (currency, amount limits). Pure: no I/O."""
        ...

    def describe(self) -> dict[str, Any]:
        """What an operator sees about it: type, link, currency. Never a secret."""
        ...

    async def purchase(self, req: OperationRequest, call: Call) -> ConnectorResult:
        """Take the payment. Not idempotent; never repeated by the connector after sending."""
        ...

    async def refund(self, req: OperationRequest, call: Call) -> ConnectorResult:
        """Pay ``req.amount`` back: of ``req.original`` when set, else to a card presented."""
        ...

    async def reverse(self, req: OperationRequest, call: Call) -> ConnectorResult:
        """Undo the earlier sale ``req.original``. A second reversal is answered ``declined``."""
        ...

    async def query(self, req: OperationRequest) -> ConnectorResult:
        """Ask what became of ``req`` (by ``req.echo_id`` and ``req.evidence``). Never moves
        money, never resends; idempotent. ``succeeded`` / ``declined`` when the counterpart's
        records prove it, ``not_sent`` when it has no record of it, else ``unknown``."""
        ...

    async def probe(self) -> Probe:
        """``query_last_only`` connectors: the counterpart's last transaction. Idempotent."""
        ...

    async def cancel(self) -> bool:
        """Ask the counterpart to abort the running operation. True if the request was
        delivered; the running call's own result tells whether it took effect. Idempotent."""
        ...

    async def deliver_input(self, action: str, text: str | None) -> bool:
        """Deliver an operator's input (one of ``capabilities.input``) to the running
        operation. True if delivered."""
        ...

    async def settle(self) -> SettlementResult:
        """Close the day and report totals. Not idempotent on the counterpart."""
        ...

    async def close(self) -> None:
        """Release links and clients. Idempotent."""
        ...


class BaseConnector:
    """Defaults for the optional parts of :class:`Connector`: refuse clearly.

    The engine checks :class:`Capabilities` before calling, so these only run if a connector's
    capabilities claim more than it implements: a bug, reported as ``not_supported``.
    """

    name: str
    family: Family
    capabilities: Capabilities = Capabilities()
    problem: str | None = None

    def _refuse(self, what: str) -> NotSupported:
        return NotSupported(f"connector {self.name} cannot {what}")

    def validate(self, kind: OperationKind, amount: Money) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {}

    async def purchase(self, req: OperationRequest, call: Call) -> ConnectorResult:
        raise self._refuse("take payments")

    async def refund(self, req: OperationRequest, call: Call) -> ConnectorResult:
        raise self._refuse("refund")

    async def reverse(self, req: OperationRequest, call: Call) -> ConnectorResult:
        raise self._refuse("reverse a sale")

    async def query(self, req: OperationRequest) -> ConnectorResult:
        raise self._refuse("answer status queries")

    async def probe(self) -> Probe:
        raise self._refuse("report its last transaction")

    async def cancel(self) -> bool:
        raise self._refuse("abort a running operation")

    async def deliver_input(self, action: str, text: str | None) -> bool:
        raise self._refuse("take input")

    async def settle(self) -> SettlementResult:
        raise self._refuse("close the day")

    async def close(self) -> None:
        return None


__all__ = [
    "BUSY_PREFIX",
    "BaseConnector",
    "Call",
    "Capabilities",
    "Connector",
    "ConnectorEvent",
    "ConnectorResult",
    "EventCallback",
    "EventKind",
    "Evidence",
    "Family",
    "NoCall",
    "OperationRequest",
    "PersistResult",
    "Probe",
    "ReceiptSide",
    "SchemeTotal",
    "SettlementResult",
]
