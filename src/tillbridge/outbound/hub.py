"""The outbound HTTP clients of one process: one :class:`OutboundClient` per account, one shared
:class:`BreakerRegistry` (shown by ``GET /v1/providers/health``), one audit hook.

Every exchange (each attempt, answered or not) is written to the audit log as ``http.outbound``
with subject ``provider/<account>``. Header secrets and URL credentials arrive already redacted
from the client; bodies are passed through the process's card-data :class:`Redactor` here, before
they reach the table (design invariant 6). A failing audit write never fails the call (the client
logs it): the exchange has already happened.

``transport`` (all accounts), ``transports`` (per account), ``sleep`` and ``clock`` are public so
tests can point clients at an in-process simulator and move breaker time by hand; set them before
the first :meth:`client` call of the account.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2

from tillbridge.audit.log import record as audit_record
from tillbridge.observability.redaction import Redactor
from tillbridge.outbound.audit import ExchangeRecord
from tillbridge.outbound.breaker import BreakerConfig, BreakerRegistry
from tillbridge.outbound.client import OutboundClient
from tillbridge.outbound.policy import CallClass
from tillbridge.retry import RetryPolicy
from tillbridge.store.db import Database

Sleep = Callable[[float], Awaitable[None]]


class OutboundHub:
    """Builds and caches the outbound clients of this process (one per account)."""

    def __init__(
        self,
        db: Database,
        redactor: Redactor,
        *,
        breakers: BreakerRegistry | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        audit: bool = True,
    ) -> None:
        self.db = db
        self.redactor = redactor
        self.breakers = breakers or BreakerRegistry(BreakerConfig())
        self.transport = transport
        self.transports: dict[str, httpx2.AsyncBaseTransport] = {}
        self.sleep = sleep
        self.clock = clock
        self.audit = audit
        self._clients: dict[str, OutboundClient] = {}

    def client(
        self,
        account: str,
        *,
        base_url: str = "",
        call_classes: Mapping[str, CallClass] | None = None,
        retry: RetryPolicy | None = None,
    ) -> OutboundClient:
        """The client of ``account``, created on first use with these options."""
        existing = self._clients.get(account)
        if existing is not None:
            return existing
        created = OutboundClient(
            account=account,
            base_url=base_url,
            transport=self.transports.get(account, self.transport),
            call_classes=call_classes,
            retry=retry,
            breakers=self.breakers,
            audit=self.audit_exchange if self.audit else None,
            clock=self.clock,
            sleep=self.sleep,
        )
        self._clients[account] = created
        return created

    async def audit_exchange(self, rec: ExchangeRecord) -> None:
        """The audit hook: one ``http.outbound`` entry per attempt, bodies redacted."""
        payload: dict[str, Any] = rec.as_dict()
        payload["request_body"] = self.redactor.redact_text(rec.request_body)
        payload["response_body"] = self.redactor.redact_text(rec.response_body)
        async with self.db.write() as conn:
            await audit_record(
                conn,
                action="http.outbound",
                actor="system",
                subject_type="provider",
                subject_id=rec.account[:200],
                payload=payload,
                redactor=self.redactor,
            )

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            await c.aclose()
