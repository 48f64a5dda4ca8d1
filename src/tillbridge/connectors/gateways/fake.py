"""The ``fake`` connector: an online sandbox that ships with the bridge.

Rules, by the amount's last two minor-unit digits (like a provider's magic test amounts):

=========  ===================================================================================
``..51``   declined (``insufficient funds``); no money moves
``..99``   the money moves, then the answer is lost (the call ends ``unknown`` after sending):
           the outcome stays ``unknown`` until :meth:`FakeConnector.query` reports it
other      succeeded
=========  ===================================================================================

Refunds follow the same rules on the refund amount. ``latency_s`` delays each call. The ledger of
what "happened at the provider" lives in the instance; a query for an id the ledger has never
seen answers ``not_sent``, which is what a real provider's "no such transaction" means. Tests and
``tillbridge demo`` use it; ``refunds = false`` in its config makes a sandbox without refunds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import Field

from tillbridge.config import ConnectorConfig
from tillbridge.connectors.types import BuildContext, ConnectorType
from tillbridge.domain.states import Outcome
from tillbridge.payments.contract import (
    BaseConnector,
    Call,
    Capabilities,
    ConnectorResult,
    Family,
    OperationRequest,
)

DECLINE_SUFFIX: Final = 51
TIMEOUT_SUFFIX: Final = 99


class FakeConnectorConfig(ConnectorConfig):
    """``[connectors.NAME] type = "fake"``: the sandbox."""

    type: Literal["fake"] = "fake"
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    #: Whether the sandbox refunds captured payments (turn off to try a provider without them).
    refunds: bool = True


def sandbox_capabilities(refunds: bool = True) -> Capabilities:
    return Capabilities(refund=refunds, partial_refund=refunds, query=True)


@dataclass
class FakeConnector(BaseConnector):
    """A sandbox connector with magic amounts; see the module docstring."""

    name: str = "fake"
    latency_s: float = 0.0
    capabilities: Capabilities = field(default_factory=sandbox_capabilities)
    family: Family = Family.ONLINE
    problem: str | None = None
    #: echo_id -> what happened at the "provider". Exposed so tests can assert money moved once.
    ledger: dict[str, ConnectorResult] = field(default_factory=dict)
    #: How many times money actually moved per echo_id (must never exceed 1).
    charges: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"type": "fake", "link": "in-process sandbox"}

    async def _delay(self) -> None:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)

    def _decide(self, req: OperationRequest) -> ConnectorResult:
        if abs(req.amount.minor) % 100 == DECLINE_SUFFIX:
            return ConnectorResult(Outcome.DECLINED, req.kind, detail="insufficient funds")
        return ConnectorResult(
            Outcome.SUCCEEDED,
            req.kind,
            amount=req.amount,
            provider_reference=f"fake-{req.echo_id}",
            auth_code=f"{abs(hash(req.echo_id)) % 1_000_000:06d}",
        )

    async def _move(self, req: OperationRequest) -> ConnectorResult:
        await self._delay()
        result = self._decide(req)
        self.ledger[req.echo_id] = result
        if result.outcome == Outcome.SUCCEEDED:
            self.charges[req.echo_id] = self.charges.get(req.echo_id, 0) + 1
        if abs(req.amount.minor) % 100 == TIMEOUT_SUFFIX:
            # The provider did it, but the answer never arrived.
            return ConnectorResult(Outcome.UNKNOWN, req.kind, detail="timeout after sending")
        return result

    async def purchase(self, req: OperationRequest, call: Call) -> ConnectorResult:
        return await self._move(req)

    async def refund(self, req: OperationRequest, call: Call) -> ConnectorResult:
        if req.original is None:
            raise self._refuse("pay money back without an original payment")
        return await self._move(req)

    async def query(self, req: OperationRequest) -> ConnectorResult:
        await self._delay()
        known = self.ledger.get(req.echo_id)
        if known is None:
            return ConnectorResult(
                Outcome.NOT_SENT, req.kind, detail="no such transaction at the provider"
            )
        return known


def _build(name: str, cfg: FakeConnectorConfig, ctx: BuildContext) -> FakeConnector:
    return FakeConnector(
        name=name,
        latency_s=cfg.latency_ms / 1000,
        capabilities=sandbox_capabilities(cfg.refunds),
    )


FAKE_TYPE: Final = ConnectorType(
    section="connectors", name="fake", model=FakeConnectorConfig, family=Family.ONLINE,
    build=_build, summary="the built-in online sandbox (magic amounts: ..51 declines, "
    "..99 times out after sending)",
)  # fmt: skip
