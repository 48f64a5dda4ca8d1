"""The runtime: everything one bridge process needs, built once from settings and config.

Nothing reads settings at import time; :func:`build_runtime` is the one place that turns
``Settings`` + ``MerchantConfig`` into live objects, and tests build their own runtimes with
their own databases and connectors.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tillbridge.config import MerchantConfig, load_config
from tillbridge.gateways.contract import PaymentConnector
from tillbridge.gateways.fake import FakeConnector
from tillbridge.inbound.wiring import Integrations, build_integrations
from tillbridge.observability.redaction import Redactor
from tillbridge.services.payments import PaymentService
from tillbridge.settings import Settings
from tillbridge.store.db import Database
from tillbridge.store.migrate import require_current
from tillbridge.terminals.engine import TerminalEngine
from tillbridge.terminals.wiring import build_terminal_engine


@dataclass
class Runtime:
    settings: Settings
    config: MerchantConfig
    db: Database
    redactor: Redactor
    connectors: dict[str, PaymentConnector]
    payments: PaymentService = field(init=False)
    #: Card terminals: the payment service's delegate for every configured terminal.
    terminals: TerminalEngine = field(init=False)
    #: Webhook intake, outgoing webhooks, outbound clients and Xentral (adds payment listeners).
    integrations: Integrations = field(init=False)

    def __post_init__(self) -> None:
        self.payments = PaymentService(self.db, self.connectors, redactor=self.redactor)
        self.terminals = build_terminal_engine(self)
        self.integrations = build_integrations(self)

    async def schema_status(self) -> str:
        """``"current"`` if the schema matches the code; raises ``SchemaOutOfDate`` otherwise.

        Used by ``/readyz``. The check runs Alembic's synchronous inspection in a thread.
        """
        await asyncio.to_thread(require_current, self.settings.database_url)
        return "current"

    async def close(self) -> None:
        await self.terminals.close()
        await self.integrations.aclose()
        await self.db.dispose()


def build_connectors(config: MerchantConfig) -> dict[str, PaymentConnector]:
    """One connector instance per configured name (explicit registry, no import magic)."""
    out: dict[str, PaymentConnector] = {}
    for name, c in config.connectors.items():
        if c.type == "fake":
            out[name] = FakeConnector(name=name, latency_s=c.latency_ms / 1000)
    return out


def build_runtime(settings: Settings, config: MerchantConfig | None = None) -> Runtime:
    cfg = config if config is not None else load_config(settings.config)
    secrets = [s.get_secret_value() for s in settings.redact_values]
    for _where, ref in cfg.secret_refs():
        try:
            secrets.append(ref.resolve())
        except Exception:  # noqa: S112 - a missing secret is reported by `config check`, not here
            continue
    return Runtime(
        settings=settings,
        config=cfg,
        # The in-process worker needs concurrency + 2 connections; the API needs some too.
        db=Database(settings.database_url, pool_size=settings.worker_concurrency + 8),
        redactor=Redactor(secrets),
        connectors=build_connectors(cfg),
    )
