"""The ``fake`` terminal: a card-present sandbox in the bridge's own process.

``[terminals.NAME] type = "fake"`` is a terminal to try the bridge with, no hardware and no
simulator needed. It runs the card-present flow for real (lease, events, the decision-point
hook, recovery, end of day) and decides by the amount's last two minor-unit digits, like the
``fake`` online sandbox:

=========  ===================================================================================
``..51``   declined by the "card issuer"; no money moves
``..99``   approved and stored by the bridge, then the answer is lost (``unknown``); recovery
           finds it by its reference
other      approved
=========  ===================================================================================

It takes no input (there is nobody at a sandbox to answer a prompt) and cannot abort.
``charges`` counts the money it moved, for tests and demos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from tillbridge.config import TerminalConfig
from tillbridge.connectors.types import BuildContext, ConnectorType
from tillbridge.domain.states import OperationKind, Outcome
from tillbridge.errors import ValidationError
from tillbridge.money import Money
from tillbridge.payments.contract import (
    BaseConnector,
    Call,
    Capabilities,
    ConnectorEvent,
    ConnectorResult,
    EventKind,
    Family,
    OperationRequest,
    ReceiptSide,
    SchemeTotal,
    SettlementResult,
)

DECLINE_SUFFIX: Final = 51
LOST_SUFFIX: Final = 99
MASKED_PAN: Final = "672559******0019"


class SandboxTerminalConfig(TerminalConfig):
    """``[terminals.NAME] type = "fake"``."""

    type: Literal["fake"] = "fake"


@dataclass
class SandboxTerminal(BaseConnector):
    """See the module docstring."""

    name: str
    currency: str = "EUR"
    store: str | None = None
    family: Family = Family.CARD_PRESENT
    problem: str | None = None
    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(
            standalone_refund=True, query=True, events=True, settle=True, receipts=True
        )
    )
    #: reference (operation id) -> what happened at the "terminal".
    ledger: dict[str, ConnectorResult] = field(default_factory=dict)
    charges: int = 0
    _trace: int = 0
    _open: list[ConnectorResult] = field(default_factory=list)

    def validate(self, kind: OperationKind, amount: Money) -> None:
        if amount.currency != self.currency:
            raise ValidationError(
                f"terminal {self.name} takes {self.currency}, not {amount.currency}",
                code="wrong_currency",
            )

    def describe(self) -> dict[str, Any]:
        return {"type": "fake", "link": "in-process sandbox terminal", "currency": self.currency,
                "store": self.store}  # fmt: skip

    async def _run(self, req: OperationRequest, call: Call) -> ConnectorResult:
        await call.emit(ConnectorEvent(EventKind.DISPLAY, "Insert or tap card"))
        await call.emit(ConnectorEvent(EventKind.PROMPT, "Enter PIN"))
        self._trace += 1
        trace = f"{self._trace:06d}"
        if req.amount.minor % 100 == DECLINE_SUFFIX:
            result = ConnectorResult(
                Outcome.DECLINED, req.kind, amount=req.amount, reference=req.operation_id,
                trace_number=trace, result_code="05", result_text="declined by the card issuer",
            )  # fmt: skip
        else:
            lines = (
                f"{req.kind.value.upper()} {req.amount}",
                f"card {MASKED_PAN}",
                f"trace {trace}",
            )
            result = ConnectorResult(
                Outcome.SUCCEEDED, req.kind, amount=req.amount, reference=req.operation_id,
                masked_pan=MASKED_PAN, card_type="sandbox", trace_number=trace,
                receipt_number=f"{self._trace:04d}", auth_code=f"{self._trace:06d}",
                result_code="00", customer_receipt=lines, merchant_receipt=lines, echo_id=trace,
            )  # fmt: skip
        await call.persist(result)  # the decision point: stored before the terminal books it
        self.ledger[req.operation_id] = result
        if result.outcome == Outcome.SUCCEEDED:
            self.charges += 1
            self._open.append(result)
            for line in result.customer_receipt:
                await call.emit(ConnectorEvent(EventKind.RECEIPT_LINE, line, ReceiptSide.CUSTOMER))
        if req.amount.minor % 100 == LOST_SUFFIX:
            return ConnectorResult(Outcome.UNKNOWN, req.kind, detail="link lost after approval")
        return result

    async def purchase(self, req: OperationRequest, call: Call) -> ConnectorResult:
        return await self._run(req, call)

    async def refund(self, req: OperationRequest, call: Call) -> ConnectorResult:
        if req.original is not None:
            raise self._refuse("refund against an earlier sale")
        return await self._run(req, call)

    async def query(self, req: OperationRequest) -> ConnectorResult:
        known = self.ledger.get(req.operation_id)
        if known is None:
            return ConnectorResult(Outcome.NOT_SENT, req.kind, detail="the terminal never saw it")
        return known

    async def settle(self) -> SettlementResult:
        batch, self._open = self._open, []
        signed = [
            -r.amount.minor if r.kind == OperationKind.REFUND else r.amount.minor
            for r in batch
            if r.amount is not None
        ]
        total = Money(sum(signed), self.currency)
        return SettlementResult(
            Outcome.SUCCEEDED, total=total, count=len(batch),
            schemes=(SchemeTotal("sandbox", len(batch), total),) if batch else (),
            result_code="00",
        )  # fmt: skip


def _build(name: str, cfg: SandboxTerminalConfig, ctx: BuildContext) -> SandboxTerminal:
    return SandboxTerminal(name=name, currency=cfg.currency, store=cfg.store)


SANDBOX_TYPE: Final = ConnectorType(
    section="terminals", name="fake", model=SandboxTerminalConfig, family=Family.CARD_PRESENT,
    build=_build, summary="a sandbox card terminal in the bridge's process (magic amounts: "
    "..51 declines, ..99 loses the answer after approval)",
)  # fmt: skip
