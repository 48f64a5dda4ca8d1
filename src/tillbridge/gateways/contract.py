"""The contract between the payment engine and a connector (a provider or a sandbox).

A connector moves money for one :class:`OperationRequest` at a time. The engine has already
committed the operation, with its ``echo_id``, before it calls the connector (persist before
you send), and it commits the :class:`ConnectorResult` before acknowledging anything.

What a connector must do:
- return a :class:`ConnectorResult` whose ``outcome`` is one of the five in DESIGN section 3;
- report ``not_sent`` only when the request provably never reached the counterpart (connect
  refused, rejected by local validation); a timeout or a cut link after sending is ``unknown``;
- make :meth:`PaymentConnector.query` answer from the counterpart's own records, keyed by the
  ``echo_id``, so an ``unknown`` outcome can be resolved.

What a connector must never do:
- send a sale again on its own initiative after an unknown outcome: only the engine decides, and
  it only ever asks (:meth:`query`);
- return or log card data beyond a masked PAN (first 6, last 4 at most).

``purchase`` and ``refund`` need not be idempotent on their own (the engine never repeats them
after an unknown outcome); ``query`` and ``cancel`` must be safe to repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tillbridge.domain.states import OperationKind, Outcome
from tillbridge.money import Money


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """What the engine asks a connector to do, with the identifier to echo."""

    operation_id: str
    payment_id: str
    kind: OperationKind
    amount: Money
    reference: str
    echo_id: str
    #: For a refund or void: the echo id of the original purchase.
    original_echo_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConnectorResult:
    """How the call ended, with the evidence the counterpart returned."""

    outcome: Outcome
    reason: str | None = None
    provider_reference: str | None = None
    masked_pan: str | None = None
    auth_code: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a connector can do; the engine asks these predicates instead of trying and failing."""

    refund: bool = True
    partial_refund: bool = True
    cancel: bool = True
    query: bool = True


class PaymentConnector(Protocol):
    """A provider or sandbox the engine can move money through (see the module docstring)."""

    name: str
    capabilities: Capabilities

    async def purchase(self, req: OperationRequest) -> ConnectorResult:
        """Take the payment. Must never be repeated by the connector after sending."""
        ...

    async def refund(self, req: OperationRequest) -> ConnectorResult:
        """Refund ``req.amount`` of the purchase echoed as ``req.original_echo_id``."""
        ...

    async def query(self, req: OperationRequest) -> ConnectorResult:
        """Ask the counterpart what became of ``req.echo_id``. Read-only; safe to repeat.

        Returns ``not_sent`` when the counterpart has no record of it (it never arrived), and
        ``unknown`` when the counterpart cannot tell yet.
        """
        ...

    async def cancel(self, req: OperationRequest) -> ConnectorResult:
        """Abort an operation in flight where the counterpart allows it; safe to repeat."""
        ...
