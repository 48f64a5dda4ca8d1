"""What an ERP type contributes to a runtime (see :mod:`tillbridge.erp.registry`).

An ERP is a *source* of payments (signed webhooks that start payments: Xentral POS) and/or a
*sink* (write-back of results: Xentral invoices, Odoo accounting). Each type declares what it
adds; the composition root (:mod:`tillbridge.app.runtime`) assembles the parts of every
configured type, in two phases: listeners before the payment engine exists, the rest after.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tillbridge.clock import Clock
from tillbridge.config import ErpConfig, MerchantConfig
from tillbridge.inbound.intake import SecretSource
from tillbridge.inbound.processing import InboxProcessor
from tillbridge.inbound.settings import InboundSettings
from tillbridge.inbound.verifiers import WebhookVerifier
from tillbridge.observability.redaction import Redactor
from tillbridge.outbound import OutboundHub
from tillbridge.payments.engine import PaymentEngine
from tillbridge.payments.ledger import PaymentListener
from tillbridge.queue import Handler
from tillbridge.retry import RetryPolicy
from tillbridge.store.db import Database


@dataclass(frozen=True, slots=True)
class InboundSource:
    """A webhook source: ``POST /webhooks/<source>/<account>``, verified, stored, processed."""

    source: str
    verifier: WebhookVerifier
    accounts: Mapping[str, SecretSource]
    processor: InboxProcessor


@dataclass(frozen=True, slots=True)
class JobKind:
    """A job kind a part runs, with its handler and retry policy."""

    kind: str
    handler: Handler
    retry: RetryPolicy


@dataclass(frozen=True, slots=True)
class ErpParts:
    """Everything one ERP type adds to a runtime, built once."""

    sources: Sequence[InboundSource] = ()
    jobs: Sequence[JobKind] = ()
    closers: Sequence[Callable[[], Awaitable[None]]] = ()
    #: Service objects by name, for the API, the CLI and tests (``xentral`` -> XentralSync).
    services: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ErpContext:
    """What an ERP type's ``build`` may use."""

    db: Database
    config: MerchantConfig
    engine: PaymentEngine
    outbound: OutboundHub
    redactor: Redactor
    clock: Clock
    inbound: InboundSettings


@dataclass(frozen=True, slots=True)
class ErpType:
    """One ``[erp.NAME] type``: its model, its listeners and its parts (see the registry)."""

    name: str
    model: type[ErpConfig]
    summary: str
    listeners: Callable[[Mapping[str, Any]], Sequence[PaymentListener]]
    build: Callable[[Mapping[str, Any], ErpContext], ErpParts]
