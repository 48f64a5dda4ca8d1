"""The webhook side of a runtime: intake with every ERP source, outgoing deliveries, ERP parts.

Built by :func:`tillbridge.app.runtime.build_runtime` after the payment engine (sources start
payments through it):

* every configured ERP type contributes its :class:`~tillbridge.erp.parts.ErpParts`: webhook
  sources (``/webhooks/<source>/<account>``, verified with the account's secrets), job kinds,
  services and what to close;
* every ``subscribers`` entry receives the outgoing events it asks for, through the
  :class:`~tillbridge.webhooks_out.events.EventPublisher` (a payment listener of the engine).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tillbridge.app.registry import Registry
from tillbridge.clock import Clock
from tillbridge.config import MerchantConfig, PluginConfig
from tillbridge.erp.parts import ErpContext, ErpParts, JobKind
from tillbridge.inbound.intake import SecretSource, WebhookIntake
from tillbridge.inbound.processing import InboxProcessor
from tillbridge.inbound.settings import InboundSettings
from tillbridge.inbound.verifiers import VerifierRegistry
from tillbridge.observability.redaction import Redactor
from tillbridge.outbound import BreakerRegistry, OutboundHub
from tillbridge.payments.engine import PaymentEngine
from tillbridge.store.db import Database
from tillbridge.webhooks_out.delivery import DeliveryService
from tillbridge.webhooks_out.events import EventPublisher, Subscription


@dataclass(frozen=True)
class Integrations:
    """The webhook and ERP services of one runtime (see the module docstring)."""

    intake: WebhookIntake
    outbound: OutboundHub
    subscriptions: Mapping[str, Subscription]
    publisher: EventPublisher
    deliveries: DeliveryService
    processors: Mapping[str, InboxProcessor]
    erp: Mapping[str, ErpParts]

    @property
    def breakers(self) -> BreakerRegistry:
        return self.outbound.breakers

    @property
    def jobs(self) -> Sequence[JobKind]:
        return [job for parts in self.erp.values() for job in parts.jobs]

    def service(self, name: str) -> Any:
        """An ERP service by name (``xentral``: the write-back sync); KeyError if none."""
        for parts in self.erp.values():
            if name in parts.services:
                return parts.services[name]
        raise KeyError(name)

    async def aclose(self) -> None:
        await self.intake.writer.aclose()
        for parts in self.erp.values():
            for close in parts.closers:
                await close()
        await self.outbound.aclose()


def build_integrations(
    *,
    db: Database,
    config: MerchantConfig,
    registry: Registry,
    engine: PaymentEngine,
    publisher: EventPublisher,
    outbound: OutboundHub,
    redactor: Redactor,
    clock: Clock,
    inbound: InboundSettings,
    erp_entries: Mapping[str, Mapping[str, PluginConfig]],
) -> Integrations:
    ctx = ErpContext(
        db=db, config=config, engine=engine, outbound=outbound, redactor=redactor, clock=clock,
        inbound=inbound,
    )  # fmt: skip
    erp = {t: registry.erp_types[t].build(entries, ctx) for t, entries in erp_entries.items()}
    verifiers = VerifierRegistry()
    accounts: dict[str, Mapping[str, SecretSource]] = {}
    processors: dict[str, InboxProcessor] = {}
    for parts in erp.values():
        for src in parts.sources:
            verifiers.register(src.source, src.verifier)
            accounts[src.source] = src.accounts
            processors[src.source] = src.processor
    intake = WebhookIntake(
        db, verifiers=verifiers, accounts=accounts, settings=inbound, redactor=redactor
    )
    return Integrations(
        intake=intake,
        outbound=outbound,
        subscriptions=publisher.subscriptions,
        publisher=publisher,
        deliveries=DeliveryService(db, outbound, publisher.subscriptions),
        processors=processors,
        erp=erp,
    )
