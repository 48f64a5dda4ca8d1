"""Outcome classification of one HTTP attempt (DESIGN section 3).

Every attempt ends in exactly one of three ways:

- a **response** came back: returned to the caller as-is; the connector maps statuses and bodies;
- **not sent**: the request provably never reached the provider (connect refused, DNS failure,
  no free connection, the client refused it before sending): :class:`~tillbridge.errors.NotSent`;
- **unknown**: the request may have been received and acted on (read timeout, connection reset
  while waiting for the answer): :class:`~tillbridge.errors.OutcomeUnknown`.

The rule of thumb: if httpx may have written a single byte of the request, the outcome is unknown.
Write errors count as unknown too, because a server can act on a request whose last bytes were
still in flight when the socket broke.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx2

from tillbridge.errors import NotSent, OutcomeUnknown
from tillbridge.outbound.policy import RETRYABLE_5XX


class AttemptKind(StrEnum):
    RESPONSE = "response"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"


class Verdict(StrEnum):
    """What an attempt says about the provider's health, for the circuit breaker."""

    SUCCESS = "success"  # the provider answered (any 1xx-4xx, including declines and 429)
    FAILURE = "failure"  # unreachable, timed out, or a 5xx
    NEUTRAL = "neutral"  # says nothing about the provider (our own refusal or bug)


# Exceptions raised before any byte of the request could leave this process. ConnectError also
# covers DNS failures (httpcore reports name resolution errors as connect errors).
_NOT_SENT_NETWORK: tuple[type[BaseException], ...] = (
    httpx2.ConnectError,
    httpx2.ConnectTimeout,
    httpx2.PoolTimeout,
    httpx2.ProxyError,
)
# Exceptions caused by our own request being unusable: never sent, and no fault of the provider.
_NOT_SENT_LOCAL: tuple[type[BaseException], ...] = (
    httpx2.UnsupportedProtocol,
    httpx2.LocalProtocolError,
    httpx2.InvalidURL,
)


def classify_exception(exc: BaseException) -> tuple[AttemptKind, Verdict]:
    """Classify an exception raised by the transport while sending one request.

    Unknown exception types are classified as ``UNKNOWN``: when in doubt, assume the request may
    have been received, because treating a received request as unsent risks moving money twice.
    """
    if isinstance(exc, _NOT_SENT_NETWORK):
        return AttemptKind.NOT_SENT, Verdict.FAILURE
    if isinstance(exc, _NOT_SENT_LOCAL):
        return AttemptKind.NOT_SENT, Verdict.NEUTRAL
    if isinstance(exc, httpx2.TransportError | httpx2.DecodingError):
        return AttemptKind.UNKNOWN, Verdict.FAILURE
    return AttemptKind.UNKNOWN, Verdict.NEUTRAL


def verdict_of_status(status: int) -> Verdict:
    """Breaker verdict for an HTTP status: only retryable 5xx count against the provider.

    4xx never opens the breaker: a decline, a validation error or a 429 shows the provider is up
    and answering.
    """
    return Verdict.FAILURE if status in RETRYABLE_5XX else Verdict.SUCCESS


@dataclass(frozen=True, slots=True)
class Evidence:
    """What is kept about a failed call, safe to log and to store (no secrets, no bodies)."""

    account: str
    group: str
    call_class: str
    method: str
    url: str  # already redacted
    attempts: int
    status: int | None = None
    provider_request_id: str | None = None
    cause: str | None = None  # exception class name of the last transport error

    def as_details(self) -> dict[str, Any]:
        return {k: v for k, v in self._items() if v is not None}

    def _items(self) -> list[tuple[str, Any]]:
        return [
            ("account", self.account),
            ("group", self.group),
            ("call_class", self.call_class),
            ("method", self.method),
            ("url", self.url),
            ("attempts", self.attempts),
            ("status", self.status),
            ("provider_request_id", self.provider_request_id),
            ("cause", self.cause),
        ]


def not_sent(evidence: Evidence, reason: str) -> NotSent:
    return NotSent(
        f"{evidence.method} {evidence.url}: not sent ({reason})", **evidence.as_details()
    )


def outcome_unknown(evidence: Evidence, reason: str) -> OutcomeUnknown:
    return OutcomeUnknown(
        f"{evidence.method} {evidence.url}: outcome unknown ({reason}); recover by status query",
        **evidence.as_details(),
    )
