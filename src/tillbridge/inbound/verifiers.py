"""Inbound webhook verifiers: one per signing scheme, chosen by source name.

The contract (:class:`WebhookVerifier`), which every implementation must keep:

- verify over the **raw body bytes** before anything parses them (re-serialised JSON never
  reproduces the signed bytes);
- compare signatures in constant time;
- accept a signature made with any of the active ``secrets`` (key rotation);
- enforce the timestamp window where the scheme signs a timestamp: ``tolerance`` seconds (default
  300) around ``now`` in both directions, so a captured delivery cannot be replayed later and a
  clock-skewed sender is noticed;
- on failure raise :class:`~tillbridge.errors.SignatureRejected`: generic public message,
  precise ``reason``;
- return the provider's event id if the scheme carries one, else ``None`` (the inbox then dedupes
  on a hash of the body).

Verification is pure: no I/O, no clock reads (``now`` is passed in), nothing logged, so secrets
cannot leak from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from tillbridge.errors import ConfigError, NotFound
from tillbridge.webhooks_out import signing
from tillbridge.webhooks_out.signing import DEFAULT_TOLERANCE

__all__ = [
    "DEFAULT_TOLERANCE",
    "StandardWebhooksVerifier",
    "VerifiedEvent",
    "VerifierRegistry",
    "WebhookVerifier",
]


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """Proof that a delivery verified. Carries no body: the caller already holds the raw bytes."""

    scheme: str
    event_id: str | None  # provider's event id when the scheme has one
    timestamp: int | None  # the signed timestamp (unix seconds) when the scheme has one
    secret_index: int  # which of the active secrets matched; tells when an old key can retire


class WebhookVerifier(Protocol):
    """Verifies one signing scheme; see the module docstring for the contract."""

    scheme: str

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secrets: Sequence[str],
        now: float,
    ) -> VerifiedEvent: ...


class StandardWebhooksVerifier:
    """Standard Webhooks v1 (``webhook-id`` / ``-timestamp`` / ``-signature``).

    The ``webhook-id`` is the event id: stable across retries, so the inbox dedupes on it.
    """

    scheme = "standard-webhooks"

    def __init__(self, tolerance: float = DEFAULT_TOLERANCE) -> None:
        if tolerance <= 0:
            raise ConfigError("tolerance must be positive")
        self.tolerance = tolerance

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secrets: Sequence[str],
        now: float,
    ) -> VerifiedEvent:
        msg = signing.verify(list(secrets), raw_body, headers, now=now, tolerance=self.tolerance)
        return VerifiedEvent(self.scheme, msg.msg_id, msg.timestamp, msg.secret_index)


class VerifierRegistry:
    """Source name (``"xentral"``, ``"bridge-eu"``) to verifier; built explicitly at startup."""

    def __init__(self, verifiers: Mapping[str, WebhookVerifier] | None = None) -> None:
        self._verifiers: dict[str, WebhookVerifier] = {}
        for source, verifier in (verifiers or {}).items():
            self.register(source, verifier)

    def register(self, source: str, verifier: WebhookVerifier) -> None:
        """Add a source; registering a name twice is a configuration error."""
        if not source or source != source.strip():
            raise ConfigError(f"invalid webhook source name {source!r}")
        if source in self._verifiers:
            raise ConfigError(f"webhook source {source!r} is already registered")
        self._verifiers[source] = verifier

    def get(self, source: str) -> WebhookVerifier:
        """The verifier for ``source``; an unknown source is :class:`NotFound` (answer 404)."""
        try:
            return self._verifiers[source]
        except KeyError:
            raise NotFound("unknown webhook source") from None

    def sources(self) -> Iterable[str]:
        return sorted(self._verifiers)

    def __contains__(self, source: object) -> bool:
        return source in self._verifiers
