"""Redaction of header and URL secrets for logs, evidence and the audit hook.

Scope: credentials that travel in headers and URLs. Which names are secret is the bridge's one
rule, :func:`~tillbridge.observability.redaction.is_sensitive_key` (the same the logs use). Card
data inside bodies is not handled here; the audit log applies its own body redaction before
anything is stored.

All functions are pure and never raise on odd input: redaction must not be the reason an
exchange goes unrecorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tillbridge.observability.redaction import is_sensitive_key

REDACTED: Final = "[redacted]"


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return a copy of ``headers`` with lower-cased names and secret values replaced.

    Repeated headers are joined with ``", "`` (as HTTP allows), so nothing is silently dropped.
    Must never return a secret value; may over-redact a harmless header whose name looks secret.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for raw_name, raw_value in items:
        name = str(raw_name).lower()
        value = REDACTED if is_sensitive_key(name) else str(raw_value)
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def redact_url(url: str) -> str:
    """Drop user info and redact secret-looking query parameters of ``url``.

    ``https://user:pw@api.example/v2/x?token=abc&page=2`` becomes
    ``https://api.example/v2/x?token=%5Bredacted%5D&page=2``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if ":" in (parts.hostname or ""):
        # IPv6 literal: hostname strips the brackets, put them back.
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if is_sensitive_key(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def truncate_body(body: bytes, limit: int) -> tuple[str, bool]:
    """Decode ``body`` for the audit record, cut to ``limit`` bytes.

    Returns ``(text, truncated)``. Undecodable bytes are replaced rather than raising, because the
    audit record is evidence, not a parser input.
    """
    truncated = len(body) > limit
    chunk = body[:limit] if truncated else body
    return chunk.decode("utf-8", errors="replace"), truncated
