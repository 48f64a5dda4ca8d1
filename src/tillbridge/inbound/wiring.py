"""Builds the webhook side of a runtime: intake, processors, outgoing events, outbound clients,
Xentral write-back. One :class:`Integrations` per :class:`~tillbridge.runtime.Runtime`.

Built from the merchant config at runtime construction (never at import):

* every ``erp`` entry of type ``xentral`` is a webhook account ``/webhooks/xentral/<name>``,
  verified with its ``webhook_secrets``; when any exists, a ``fake`` connector is guaranteed
  (Xentral payments fall back to it until their register's terminal is a connector);
* every ``subscribers`` entry receives the outgoing events it asks for;
* the payment listeners (event publisher, Xentral write-back) are appended to the runtime's
  :class:`~tillbridge.services.payments.PaymentService`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tillbridge.erp.xentral.source import (
    SOURCE,
    XentralSource,
    xentral_accounts,
)
from tillbridge.erp.xentral.sync import (
    WRITEBACK_JOB,
    WRITEBACK_RETRY,
    XentralSync,
    writeback_listener,
)
from tillbridge.inbound.inbox import PROCESS_JOB
from tillbridge.inbound.intake import SecretSource, WebhookIntake
from tillbridge.inbound.processing import PROCESS_RETRY, InboxProcessor, make_handler
from tillbridge.inbound.settings import InboundSettings
from tillbridge.inbound.verifiers import VerifierRegistry, XentralVerifier
from tillbridge.outbound import BreakerRegistry
from tillbridge.queue import JobRegistry
from tillbridge.webhooks_out.clients import OutboundHub
from tillbridge.webhooks_out.delivery import DELIVER_RETRY, DeliveryService
from tillbridge.webhooks_out.events import (
    DELIVER_JOB,
    EventPublisher,
    Subscription,
    subscriptions_from_config,
)

if TYPE_CHECKING:
    from tillbridge.runtime import Runtime


@dataclass
class Integrations:
    """The webhook and provider services of one runtime (see the module docstring)."""

    intake: WebhookIntake
    outbound: OutboundHub
    subscriptions: dict[str, Subscription]
    publisher: EventPublisher
    deliveries: DeliveryService
    xentral: XentralSync
    processors: dict[str, InboxProcessor] = field(default_factory=dict)

    @property
    def breakers(self) -> BreakerRegistry:
        return self.outbound.breakers

    def register_jobs(self, registry: JobRegistry) -> None:
        """Add this side's job kinds to ``registry``."""
        registry.register(
            PROCESS_JOB, make_handler(self.intake.db, self.processors), retry=PROCESS_RETRY
        )
        registry.register(DELIVER_JOB, self.deliveries.deliver, retry=DELIVER_RETRY)
        registry.register(WRITEBACK_JOB, self.xentral.run, retry=WRITEBACK_RETRY)

    async def aclose(self) -> None:
        await self.intake.writer.aclose()
        await self.xentral.aclose()
        await self.outbound.aclose()


def build_integrations(rt: Runtime, *, settings: InboundSettings | None = None) -> Integrations:
    """Build the integrations of ``rt`` and hook its payment listeners up."""
    cfg = rt.config
    inbound_settings = settings or InboundSettings()
    accounts = xentral_accounts(cfg)
    secrets = {
        name: SecretSource(cfg.erp[name].webhook_secrets, inbound_settings.secret_ttl_s)
        for name in accounts
    }
    intake = WebhookIntake(
        rt.db,
        verifiers=VerifierRegistry(
            {SOURCE: XentralVerifier(tolerance=inbound_settings.tolerance_s)}
        ),
        accounts={SOURCE: secrets},
        settings=inbound_settings,
        redactor=rt.redactor,
    )
    hub = OutboundHub(rt.db, rt.redactor)
    subscriptions = subscriptions_from_config(cfg.subscribers)
    publisher = EventPublisher(subscriptions)
    rt.payments.listeners.extend([publisher, writeback_listener])
    return Integrations(
        intake=intake,
        outbound=hub,
        subscriptions=subscriptions,
        publisher=publisher,
        deliveries=DeliveryService(rt.db, hub, subscriptions),
        xentral=XentralSync(rt.db, cfg, hub),
        processors={SOURCE: XentralSource(rt.payments, cfg, rt.connectors)},
    )
