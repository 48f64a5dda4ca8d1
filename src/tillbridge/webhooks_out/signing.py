"""Standard Webhooks v1 (symmetric) signing and verification.

The bridge signs the webhooks it emits to merchants with this scheme, and verifies
bridge-to-bridge deliveries with it:

- secret: ``whsec_`` + base64 of 24 to 64 random bytes;
- signed content: ``{webhook-id}.{webhook-timestamp}.{raw body}`` (id and timestamp never contain
  a dot);
- ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries, one per active
  secret, which is what makes key rotation work without downtime;
- receivers reject timestamps more than ``tolerance`` seconds (default 300) away from now, in
  either direction.

Verification failures raise :class:`~tillbridge.errors.SignatureRejected`: its message is the
same for every cause (safe to show to the sender), while ``reason`` says exactly what failed, for
our own logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from tillbridge.config import WHSEC_MAX_BYTES, WHSEC_MIN_BYTES, WHSEC_PREFIX, decode_whsec
from tillbridge.errors import ConfigError, SignatureRejected, ValidationError

SECRET_PREFIX: Final = WHSEC_PREFIX
DEFAULT_TOLERANCE: Final = 300
MIN_SECRET_BYTES: Final = WHSEC_MIN_BYTES
MAX_SECRET_BYTES: Final = WHSEC_MAX_BYTES

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"


@dataclass(frozen=True, slots=True)
class VerifiedMessage:
    msg_id: str
    timestamp: int
    secret_index: int  # which of the given secrets matched (rotation telemetry)


def generate_secret(nbytes: int = 32) -> str:
    """A new random ``whsec_`` secret of ``nbytes`` bytes (24..64)."""
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise ConfigError(f"secret length must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret; raises :class:`ConfigError` if it is unusable.

    One rule with the config's :class:`~tillbridge.config.SigningSecretRef` (which checks it
    when the secret is resolved): :func:`tillbridge.config.decode_whsec`.
    """
    return decode_whsec(secret)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{msg_id}.{timestamp}.{body}``.

    Raises :class:`ValidationError` for an id containing a dot or whitespace or a bad timestamp,
    because the receiver could not reconstruct the signed content unambiguously.
    """
    _check_id(msg_id)
    _check_timestamp(timestamp)
    return "v1," + base64.b64encode(
        _mac(decode_secret(secret), msg_id, str(timestamp), body)
    ).decode("ascii")


def headers(
    secret: str | Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt.

    Several secrets (during a rotation) give several space-separated signatures, so receivers
    holding either the old or the new secret accept the message.
    """
    keys = [secret] if isinstance(secret, str) else list(secret)
    if not keys:
        raise ConfigError("at least one signing secret is needed")
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(sign(k, msg_id, timestamp, body) for k in keys),
    }


def verify(
    secrets: str | Sequence[str],
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> VerifiedMessage:
    """Verify a Standard Webhooks delivery over the raw ``body`` bytes.

    Must be called before the body is parsed. Accepts the message if any ``v1`` signature matches
    any of ``secrets`` (constant-time comparison) and the timestamp lies within ``tolerance``
    seconds of ``now`` in either direction. Unknown signature versions (``v1a``) are ignored.
    Raises :class:`SignatureRejected` otherwise, and :class:`ConfigError` for an unusable secret.
    """
    keys = [decode_secret(s) for s in ([secrets] if isinstance(secrets, str) else secrets)]
    if not keys:
        raise SignatureRejected("no_active_secret")
    msg_id = header_value(headers, ID_HEADER)
    raw_ts = header_value(headers, TIMESTAMP_HEADER)
    raw_sigs = header_value(headers, SIGNATURE_HEADER)
    if "." in msg_id or not msg_id.isprintable() or " " in msg_id:
        raise SignatureRejected("malformed_id")
    timestamp = parse_timestamp(raw_ts)
    check_window(timestamp, now=now, tolerance=tolerance)

    candidates = []
    for entry in raw_sigs.split(" "):
        version, sep, value = entry.partition(",")
        if sep and version == "v1":
            try:
                candidates.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue  # one garbled entry must not hide a valid one next to it
    if not candidates:
        raise SignatureRejected("no_v1_signature")
    for index, key in enumerate(keys):
        expected = _mac(key, msg_id, raw_ts, body)
        if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            return VerifiedMessage(msg_id=msg_id, timestamp=timestamp, secret_index=index)
    raise SignatureRejected("no_matching_signature")


# helpers shared with the inbound verifiers ----------------------------------------------------


def header_value(headers: Mapping[str, str], name: str) -> str:
    """The single value of header ``name`` (case-insensitive) or :class:`SignatureRejected`.

    Works for plain dicts and case-insensitive header objects alike. Two different values for the
    same header are rejected: which one was signed would be ambiguous.
    """
    found: set[str] = set()
    for key, value in headers.items():
        if key.lower() == name:
            found.add(value.strip())
    if not found or found == {""}:
        raise SignatureRejected(f"missing_header:{name}")
    if len(found) > 1:
        raise SignatureRejected(f"conflicting_header:{name}")
    return found.pop()


def parse_timestamp(raw: str) -> int:
    """Unix seconds from a header; only plain ASCII digits, at most 12 of them."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise SignatureRejected("malformed_timestamp")
    return int(raw)


def check_window(timestamp: int, *, now: float, tolerance: float) -> None:
    """Reject a timestamp older or newer than ``tolerance`` seconds around ``now``."""
    if timestamp < now - tolerance:
        raise SignatureRejected("timestamp_too_old")
    if timestamp > now + tolerance:
        raise SignatureRejected("timestamp_in_future")


def _mac(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    # The timestamp is signed as the exact header text, never re-formatted from the parsed int.
    signed = msg_id.encode("utf-8") + b"." + timestamp.encode("ascii") + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _check_id(msg_id: str) -> None:
    if not msg_id or "." in msg_id or " " in msg_id or not msg_id.isprintable():
        raise ValidationError("webhook id must be non-empty, printable, without dots or spaces")


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValidationError("webhook timestamp must be a non-negative integer (unix seconds)")
