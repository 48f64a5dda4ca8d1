"""Outbound HTTP for provider connectors: one client with timeouts per call class, retries of
safe calls only, circuit breakers, client-side rate limits, outcome classification and an audit
hook. :class:`OutboundHub` builds one client per account and writes every exchange to the audit
log; the client itself is pure of any database. Every I/O edge is injectable.
"""

from __future__ import annotations

from tillbridge.errors import RateLimited
from tillbridge.outbound.audit import AuditHook, ExchangeRecord
from tillbridge.outbound.breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
)
from tillbridge.outbound.client import DEFAULT_REQUEST_ID_HEADERS, OutboundClient
from tillbridge.outbound.hub import OutboundHub
from tillbridge.outbound.policy import (
    DEFAULT_CALL_CLASSES,
    HTTP_RETRY,
    NO_RETRY,
    RETRY_STATUSES,
    CallClass,
    ResponsePredicate,
    parse_retry_after,
    still_processing_statuses,
)
from tillbridge.outbound.ratelimit import AccountRateLimit
from tillbridge.outbound.redact import redact_headers, redact_url
from tillbridge.retry import RetryPolicy

__all__ = [
    "DEFAULT_CALL_CLASSES",
    "DEFAULT_REQUEST_ID_HEADERS",
    "HTTP_RETRY",
    "NO_RETRY",
    "RETRY_STATUSES",
    "AccountRateLimit",
    "AuditHook",
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "CallClass",
    "CircuitBreaker",
    "ExchangeRecord",
    "OutboundClient",
    "OutboundHub",
    "RateLimited",
    "ResponsePredicate",
    "RetryPolicy",
    "parse_retry_after",
    "redact_headers",
    "redact_url",
    "still_processing_statuses",
]
