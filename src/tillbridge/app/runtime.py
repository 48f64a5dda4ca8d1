"""The composition root: everything one bridge process needs, built once from settings and config.

Nothing reads settings at import time; :func:`build_runtime` is the one place that turns
``Settings`` + ``MerchantConfig`` into live objects, in dependency order, each step returning a
value and none mutating what an earlier one built:

1. the database, the redactor (with every configured secret) and the outbound HTTP hub;
2. the connectors, from the registry (a type this build does not know is a config error);
3. the connector families: card-present (leases, events) and online;
4. the payment listeners: terminal events, outgoing webhooks, ERP write-back;
5. the payment engine, and the terminal service on top of it;
6. the integrations: webhook intake with every ERP source, outgoing deliveries, ERP parts.

Tests build their own runtimes (:func:`tillbridge.testing.make_runtime`) with their own
databases, clocks and connectors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from tillbridge.app.integrations import Integrations, build_integrations
from tillbridge.app.registry import Registry, default_registry
from tillbridge.clock import Clock, utcnow
from tillbridge.config import CONNECTOR_SECTIONS, MerchantConfig
from tillbridge.connectors.terminals.family import CardPresentFamily
from tillbridge.connectors.terminals.service import TerminalService
from tillbridge.connectors.types import BuildContext
from tillbridge.errors import ConfigError
from tillbridge.inbound.settings import InboundSettings, load_inbound_settings
from tillbridge.observability.redaction import Redactor
from tillbridge.outbound import OutboundHub
from tillbridge.payments.contract import Connector
from tillbridge.payments.engine import PaymentEngine
from tillbridge.payments.families import OnlineFamily
from tillbridge.payments.ledger import PaymentListener
from tillbridge.settings import Settings
from tillbridge.store.db import Database
from tillbridge.store.migrate import require_current
from tillbridge.webhooks_out.events import EventPublisher, subscriptions_from_config


@dataclass(frozen=True)
class Runtime:
    """One bridge process's services (see the module docstring)."""

    settings: Settings
    config: MerchantConfig
    registry: Registry
    db: Database
    redactor: Redactor
    clock: Clock
    connectors: Mapping[str, Connector]
    payments: PaymentEngine
    terminals: TerminalService
    integrations: Integrations

    async def schema_status(self) -> str:
        """``"current"`` if the schema matches the code; raises ``SchemaOutOfDate`` otherwise.

        Used by ``/readyz``. The check runs Alembic's synchronous inspection in a thread.
        """
        await asyncio.to_thread(require_current, self.settings.database_url)
        return "current"

    async def close(self) -> None:
        for c in self.connectors.values():
            await c.close()
        await self.integrations.aclose()
        await self.db.dispose()


def build_connectors(
    registry: Registry, config: MerchantConfig, ctx: BuildContext
) -> dict[str, Connector]:
    """One connector per configured name, built by its type's registry entry."""
    out: dict[str, Connector] = {}
    for section in CONNECTOR_SECTIONS:
        for name, entry in getattr(config, section).items():
            if name in out:
                raise ConfigError(f"{section}.{name}: the connector name {name!r} is used twice")
            out[name] = registry.connector_type(section, entry, name).build(name, entry, ctx)
    return out


def configured_secrets(settings: Settings, config: MerchantConfig) -> list[str]:
    """Every secret value the redactor must mask: settings' own and the config's references
    (one that does not resolve is reported by ``config check``, not here)."""
    values = [s.get_secret_value() for s in settings.redact_values]
    for _where, ref in config.secret_refs():
        try:
            values.append(ref.resolve())
        except ConfigError:
            continue
    return values


def build_runtime(
    settings: Settings,
    config: MerchantConfig | None = None,
    *,
    registry: Registry | None = None,
    connectors: Mapping[str, Connector] | None = None,
    clock: Clock = utcnow,
    inbound: InboundSettings | None = None,
    outbound: OutboundHub | None = None,
) -> Runtime:
    """Build the runtime of one process. ``connectors`` adds to (or replaces, by name) the
    ones the config describes; tests use it for instrumented fakes."""
    reg = registry or default_registry()
    cfg = (
        config
        if config is not None
        else reg.load_config(settings.config, required=not settings.config_is_default)
    )
    redactor = Redactor(configured_secrets(settings, cfg))
    # The in-process worker needs concurrency + 2 connections; the API needs some too.
    db = Database(settings.database_url, pool_size=settings.worker_concurrency + 8)
    hub = outbound or OutboundHub(db, redactor)
    built = build_connectors(reg, cfg, BuildContext(redactor=redactor, clock=clock, outbound=hub))
    built.update(connectors or {})
    card_present = CardPresentFamily(db, built, redactor=redactor, clock=clock)
    publisher = EventPublisher(subscriptions_from_config(cfg.subscribers), clock=clock)
    erp_entries = reg.erp_entries(cfg)
    listeners: list[PaymentListener] = [card_present.on_payment_change, publisher]
    for erp_type, entries in erp_entries.items():
        listeners.extend(reg.erp_types[erp_type].listeners(entries))
    engine = PaymentEngine(
        db,
        built,
        (OnlineFamily(), card_present),
        redactor=redactor,
        clock=clock,
        listeners=listeners,
    )
    integrations = build_integrations(
        db=db, config=cfg, registry=reg, engine=engine, publisher=publisher, outbound=hub,
        redactor=redactor, clock=clock, inbound=inbound or load_inbound_settings(),
        erp_entries=erp_entries,
    )  # fmt: skip
    return Runtime(
        settings=settings,
        config=cfg,
        registry=reg,
        db=db,
        redactor=redactor,
        clock=clock,
        connectors=built,
        payments=engine,
        terminals=TerminalService(engine, card_present),
        integrations=integrations,
    )
