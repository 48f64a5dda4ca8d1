"""Inbound webhook verifiers: one per signing scheme, chosen by source name.

The contract (:class:`WebhookVerifier`), which every implementation must keep:

- verify over the **raw body bytes** before anything parses them (re-serialised JSON never
  reproduces the signed bytes);
- compare signatures in constant time;
- accept a signature made with any of the active ``secrets`` (key rotation);
- enforce the timestamp window where the scheme signs a timestamp: ``tolerance`` seconds (default
  300) around ``now`` in both directions, so a captured delivery cannot be replayed later and a
  clock-skewed sender is noticed;
- on failure raise :class:`SignatureRejected`: generic public message, precise ``reason``;
- return the provider's event id if the scheme carries one, else ``None`` (the inbox then dedupes
  on a hash of the body).

Verification is pure: no I/O, no clock reads (``now`` is passed in), nothing logged, so secrets
cannot leak from here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from tillbridge.errors import ConfigError, NotFound
from tillbridge.webhooks_out import signing
from tillbridge.webhooks_out.signing import (
    DEFAULT_TOLERANCE,
    SignatureRejected,
    check_window,
    header_value,
    parse_timestamp,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "SignatureRejected",
    "StandardWebhooksVerifier",
    "VerifiedEvent",
    "VerifierRegistry",
    "WebhookVerifier",
    "XentralVerifier",
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


XENTRAL_SIGNATURE_HEADER: Final = "xentral-signature"
XENTRAL_TIMESTAMP_HEADER: Final = "xentral-request-timestamp"


def xentral_signature(key: str, raw_body: bytes, timestamp: str) -> str:
    """Xentral's signature: hex HMAC-SHA256 with the UTF-8 key over ``raw_body + timestamp``.

    The timestamp is the header's text (unix seconds) appended with no separator.
    """
    mac = hmac.new(key.encode("utf-8"), raw_body + timestamp.encode("ascii"), hashlib.sha256)
    return mac.hexdigest()


class XentralVerifier:
    """``xentral-signature`` / ``xentral-request-timestamp`` webhooks (gateways.md section 3.1).

    Xentral documents no replay window; we enforce ``tolerance`` anyway. The envelope has no event
    id, so ``event_id`` is always ``None``. The signature key is the plain string shown in the
    Xentral UI (20 to 255 characters), used as UTF-8 bytes.
    """

    scheme = "xentral"

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
        active = [s for s in secrets if s]
        if not active:
            raise SignatureRejected("no_active_secret")
        given = header_value(headers, XENTRAL_SIGNATURE_HEADER).lower()
        raw_ts = header_value(headers, XENTRAL_TIMESTAMP_HEADER)
        if len(given) != 64 or not _is_hex(given):
            raise SignatureRejected("malformed_signature")
        timestamp = parse_timestamp(raw_ts)
        check_window(timestamp, now=now, tolerance=self.tolerance)
        for index, key in enumerate(active):
            expected = xentral_signature(key, raw_body, raw_ts)
            if hmac.compare_digest(expected.encode("ascii"), given.encode("ascii")):
                return VerifiedEvent(self.scheme, None, timestamp, index)
        raise SignatureRejected("no_matching_signature")


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


_HEX64: Final = re.compile(r"[0-9a-f]{64}")


def _is_hex(text: str) -> bool:
    return _HEX64.fullmatch(text) is not None
