"""Xentral webhook signatures: ``xentral-signature`` over the raw body and the timestamp.

Implements the inbound :class:`~tillbridge.inbound.verifiers.WebhookVerifier` contract for the
``xentral`` source (gateways.md section 3.1).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Final

from tillbridge.errors import ConfigError, SignatureRejected
from tillbridge.inbound.verifiers import VerifiedEvent
from tillbridge.webhooks_out.signing import (
    DEFAULT_TOLERANCE,
    check_window,
    header_value,
    parse_timestamp,
)

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


_HEX64: Final = re.compile(r"[0-9a-f]{64}")


def _is_hex(text: str) -> bool:
    return _HEX64.fullmatch(text) is not None
