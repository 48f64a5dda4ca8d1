"""The fake connector: a provider sandbox that ships with the bridge.

Rules, by the amount's last two minor-unit digits (like a provider's magic test amounts):

=========  ===================================================================================
``..51``   declined (``insufficient funds``); no money moves
``..99``   the money moves, then the answer is lost (the call raises a timeout after sending):
           the outcome is ``unknown`` until :meth:`FakeConnector.query` reports ``succeeded``
other      succeeded
=========  ===================================================================================

``latency_s`` adds a delay to each call. The ledger of what "happened at the provider" lives
in the instance; a query for an id the ledger has never seen answers ``not_sent``, which is
what a real provider's "no such transaction" means. Tests and ``tillbridge demo`` use it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tillbridge.domain.states import Outcome
from tillbridge.gateways.contract import (
    Capabilities,
    ConnectorResult,
    OperationRequest,
)

DECLINE_SUFFIX = 51
TIMEOUT_SUFFIX = 99


@dataclass
class FakeConnector:
    """A sandbox connector with magic amounts; see the module docstring."""

    name: str = "fake"
    latency_s: float = 0.0
    capabilities: Capabilities = field(default_factory=Capabilities)
    #: echo_id -> what happened at the "provider". Exposed so tests can assert money moved once.
    ledger: dict[str, ConnectorResult] = field(default_factory=dict)
    #: How many times money actually moved per echo_id (must never exceed 1).
    charges: dict[str, int] = field(default_factory=dict)

    async def _delay(self) -> None:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)

    def _decide(self, req: OperationRequest) -> ConnectorResult:
        suffix = abs(req.amount.minor) % 100
        if suffix == DECLINE_SUFFIX:
            return ConnectorResult(Outcome.DECLINED, reason="insufficient funds")
        return ConnectorResult(
            Outcome.SUCCEEDED,
            provider_reference=f"fake-{req.echo_id}",
            auth_code=f"{abs(hash(req.echo_id)) % 1_000_000:06d}",
        )

    async def purchase(self, req: OperationRequest) -> ConnectorResult:
        await self._delay()
        result = self._decide(req)
        self.ledger[req.echo_id] = result
        if result.outcome == Outcome.SUCCEEDED:
            self.charges[req.echo_id] = self.charges.get(req.echo_id, 0) + 1
        if abs(req.amount.minor) % 100 == TIMEOUT_SUFFIX:
            # The provider did it, but the answer never arrived.
            return ConnectorResult(Outcome.UNKNOWN, reason="timeout after sending")
        return result

    async def refund(self, req: OperationRequest) -> ConnectorResult:
        await self._delay()
        result = ConnectorResult(Outcome.SUCCEEDED, provider_reference=f"fake-{req.echo_id}")
        self.ledger[req.echo_id] = result
        return result

    async def query(self, req: OperationRequest) -> ConnectorResult:
        await self._delay()
        known = self.ledger.get(req.echo_id)
        if known is None:
            return ConnectorResult(Outcome.NOT_SENT, reason="no such transaction at the provider")
        return known

    async def cancel(self, req: OperationRequest) -> ConnectorResult:
        await self._delay()
        return ConnectorResult(Outcome.SUCCEEDED)
