"""The audit record of one HTTP exchange, handed to an injected async hook.

The client builds one :class:`ExchangeRecord` per attempt (retries produce several), including
attempts that failed without a response. Header secrets and URL credentials are already redacted;
bodies are truncated but not scrubbed of card data: the hook owner (the audit log) must apply its
body redaction before storing anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ExchangeRecord:
    account: str
    group: str
    call_class: str
    attempt: int  # 1-based
    method: str
    url: str  # redacted
    outcome: str  # "response" | "not_sent" | "unknown"
    duration_ms: float
    status: int | None = None
    error: str | None = None  # exception class name when there was no response
    provider_request_id: str | None = None
    idempotent: bool = False
    request_headers: dict[str, str] = field(default_factory=dict)  # redacted
    response_headers: dict[str, str] = field(default_factory=dict)  # redacted
    request_body: str = ""
    request_body_truncated: bool = False
    response_body: str = ""
    response_body_truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


#: Must not raise for the call to succeed: the client catches and logs hook errors, because a
#: failing audit write must never turn a completed money movement into an error.
AuditHook = Callable[[ExchangeRecord], Awaitable[None]]
