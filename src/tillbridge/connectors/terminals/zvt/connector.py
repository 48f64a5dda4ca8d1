"""The ZVT connector: :class:`~tillbridge.payments.contract.Connector` over a ZVT terminal.

``[terminals.NAME] type = "zvt"`` with ``host`` (and ``port``) for TCP or ``serial`` for a serial
line. The protocol work is :class:`~.client.ZvtTerminal`'s; this module maps the engine's requests
onto it and its answers back:

* the decision point (the Status-Information, before it is acknowledged) calls the running
  call's ``persist``; a result outside a payment is refused, so the terminal reverses it;
* recovery asks the terminal to repeat its last transaction (``query_last_only``); an answer
  that never arrived (no link, garbage) is ``reached=False`` and worth asking again, one that
  arrived but proves nothing is not;
* only ``abort`` can be delivered as input: ZVT terminals take PIN, confirmations and selections
  on the terminal itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final, Literal

from pydantic import Field, model_validator

from tillbridge.config import SecretRef, TerminalConfig
from tillbridge.connectors.terminals.zvt.client import MAX_ZVT_AMOUNT, ZvtTerminal
from tillbridge.connectors.terminals.zvt.config import ZvtConfig
from tillbridge.connectors.terminals.zvt.flow import Phase
from tillbridge.connectors.terminals.zvt.requests import (
    PurchaseRequest,
    RefundRequest,
    ReversalRequest,
    StatusQuery,
)
from tillbridge.connectors.types import BuildContext, ConnectorType
from tillbridge.domain.states import OperationKind
from tillbridge.errors import ConfigError, NotSent, NotSupported, ValidationError
from tillbridge.money import Money
from tillbridge.payments.contract import (
    BaseConnector,
    Call,
    Capabilities,
    ConnectorResult,
    Family,
    OperationRequest,
    PersistResult,
    Probe,
    SettlementResult,
)

#: How ``ZvtTerminal.query_status`` words an answer that never arrived.
_NOT_ASKED: Final = ("cannot ask the terminal", "the terminal is busy", "terminal busy")
_NO_REPEAT: Final = "the terminal did not repeat its last transaction"


class ZvtPassword(SecretRef):
    """The terminal's ECR password: six digits (ZVT sends it as 3 BCD bytes)."""

    def check(self, value: str) -> str | None:
        if len(value) != 6 or not value.isdigit():
            return f"a ZVT password is six digits, this one has {len(value)} characters"
        return None


class ZvtTerminalConfig(TerminalConfig):
    """``[terminals.NAME] type = "zvt"``."""

    type: Literal["zvt"] = "zvt"
    host: str | None = None
    port: int = Field(default=20007, ge=1, le=65535)
    serial: str | None = None
    #: The terminal's six-digit password; the factory default 000000 when none is named.
    password: ZvtPassword | None = None
    charset: Literal["cp437", "latin-1"] = "cp437"

    @model_validator(mode="after")
    def _one_link(self) -> ZvtTerminalConfig:
        if (self.host is None) == (self.serial is None):
            raise ValueError('a ZVT terminal needs exactly one of host = "..." or serial = "..."')
        return self


def could_not_ask(result: ConnectorResult) -> bool:
    """True when a still-``unknown`` status query never got the terminal's answer (a link
    problem), as opposed to an answer that proves nothing (worth no second question)."""
    detail = (result.detail or "").lower()
    if detail.startswith(_NOT_ASKED):
        return True
    if detail.startswith(_NO_REPEAT):
        # "aborted: ..." / "refused: ...": the terminal answered; it has nothing to repeat.
        return not any(f": {w}:" in detail for w in ("aborted", "refused"))
    return False


class ZvtConnector(BaseConnector):
    """One ZVT terminal as the engine sees it (see the module docstring)."""

    family = Family.CARD_PRESENT

    def __init__(
        self,
        name: str,
        make: Callable[[PersistResult], ZvtTerminal],
        *,
        link: str,
        currency: str,
        charset: str = "cp437",
        store: str | None = None,
        problem: str | None = None,
    ) -> None:
        self.name = name
        self.link = link
        self.currency = currency
        self.charset = charset
        self.store = store
        self.problem = problem
        self._call: Call | None = None
        # The client is built with our persist hook, which forwards to the running call.
        self.zvt = make(self._persist)

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]  # a live view, read-only
        """Read from the client's config each time (a vendor switch may change it)."""
        return self.zvt.capabilities

    async def _persist(self, result: ConnectorResult) -> None:
        call = self._call
        if call is None:
            # A result with no payment to attach it to must not be accepted blindly.
            raise RuntimeError(f"terminal {self.name}: result outside a payment session")
        await call.persist(result)

    def validate(self, kind: OperationKind, amount: Money) -> None:
        if amount.currency != self.currency:
            raise ValidationError(
                f"terminal {self.name} takes {self.currency}, not {amount.currency}",
                code="wrong_currency",
            )
        if not 0 < amount.minor <= MAX_ZVT_AMOUNT:
            raise ValidationError(
                f"a terminal amount is 1 to {MAX_ZVT_AMOUNT} minor units", code="invalid_amount"
            )

    def describe(self) -> dict[str, Any]:
        return {"type": "zvt", "link": self.link, "currency": self.currency,
                "charset": self.charset, "store": self.store}  # fmt: skip

    async def _run(self, call: Call, coro: Any) -> ConnectorResult:
        self._call = call
        try:
            result: ConnectorResult = await coro
            return result
        finally:
            self._call = None

    async def purchase(self, req: OperationRequest, call: Call) -> ConnectorResult:
        return await self._run(
            call, self.zvt.purchase(PurchaseRequest(req.amount, req.operation_id, call.emit))
        )

    async def refund(self, req: OperationRequest, call: Call) -> ConnectorResult:
        if req.original is not None:
            raise NotSupported(
                f"terminal {self.name} pays refunds to a card presented, not against a sale"
            )
        return await self._run(
            call, self.zvt.refund(RefundRequest(req.amount, req.operation_id, call.emit))
        )

    async def reverse(self, req: OperationRequest, call: Call) -> ConnectorResult:
        original = req.original
        rev = ReversalRequest(
            req.amount,
            req.operation_id,
            receipt_number=original.receipt_number if original else None,
            echo_id=original.trace_number if original else None,
            on_event=call.emit,
        )
        return await self._run(call, self.zvt.reversal(rev))

    async def query(self, req: OperationRequest) -> ConnectorResult:
        ev = req.evidence
        result = await self.zvt.query_status(
            StatusQuery(
                reference=req.operation_id,
                kind=req.kind,
                amount=req.amount,
                echo_id=ev.trace_number,
                receipt_number=ev.receipt_number,
                previous_echo_id=ev.previous_trace_number,
            )
        )
        if could_not_ask(result):
            result = dataclasses.replace(result, reached=False)
        return result

    async def probe(self) -> Probe:
        """Repeat Receipt without a printout: the terminal's last trace and receipt number."""
        try:
            rec, info = await self.zvt.repeat_last()
        except NotSent as exc:
            return Probe(False, detail=str(exc))
        if info is not None:
            return Probe(True, info.trace, info.receipt_number)
        if rec.abort is not None or rec.refused is not None:
            # The terminal answered and has nothing to repeat: a fresh terminal.
            return Probe(True, detail="the terminal has no last transaction")
        reached = rec.phase is not Phase.NOT_SENT and rec.failure is None
        return Probe(reached, detail=str(rec.failure or "no answer"))

    async def cancel(self) -> bool:
        return await self.zvt.cancel()

    async def deliver_input(self, action: str, text: str | None) -> bool:
        if action != "abort":
            raise NotSupported(
                "ZVT terminals take PIN, confirmations and selections on the terminal itself; "
                "only 'abort' can be delivered"
            )
        return await self.cancel()

    async def settle(self) -> SettlementResult:
        return await self.zvt.settle()

    async def close(self) -> None:
        await self.zvt.close()


def build_zvt(name: str, cfg: ZvtTerminalConfig, ctx: BuildContext) -> ZvtConnector:
    """The connector of ``[terminals.NAME]``. A password that does not resolve does not stop the
    bridge: the terminal refuses payments and says why (the other commands keep working)."""
    problem = None
    password = "000000"  # noqa: S105 - the ZVT factory default, not a secret
    if cfg.password is not None:
        try:
            password = cfg.password.resolve()
        except ConfigError as exc:
            problem = exc.message
    zcfg = ZvtConfig(password=password, currency=cfg.currency, charset=cfg.charset)
    if cfg.host is not None:
        host, port = cfg.host, cfg.port

        def tcp(persist: PersistResult) -> ZvtTerminal:
            return ZvtTerminal.tcp(host, port, config=zcfg, persist_result=persist)

        link, make = f"tcp://{host}:{port}", tcp
    else:
        device = cfg.serial
        assert device is not None  # the model demands exactly one of host and serial

        def serial(persist: PersistResult) -> ZvtTerminal:
            return ZvtTerminal.serial(device, config=zcfg, persist_result=persist)

        link, make = f"serial:{device}", serial
    return ZvtConnector(
        name, make, link=link, currency=cfg.currency, charset=cfg.charset, store=cfg.store,
        problem=problem,
    )  # fmt: skip


ZVT_TYPE: Final = ConnectorType(
    section="terminals", name="zvt", model=ZvtTerminalConfig, family=Family.CARD_PRESENT,
    build=build_zvt, summary="a ZVT-700 card terminal over TCP or a serial line",
)  # fmt: skip
