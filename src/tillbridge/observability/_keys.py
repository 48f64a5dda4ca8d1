"""Sensitive key names and the key/value rules for free text (used by :mod:`.redaction`).

:func:`is_sensitive_key` is the bridge's one rule for names whose values are secret: log and
audit keys here, HTTP header and query parameter names in :mod:`tillbridge.outbound.redact`. It
is the union of the two rules those used to have (never redacting less than either did), less
two names known to be harmless (:data:`_READABLE`).

Private to the observability package: import :class:`~tillbridge.observability.redaction.Redactor`
and :func:`~tillbridge.observability.redaction.is_sensitive_key` from ``redaction``.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from functools import lru_cache
from typing import Final

#: What a redacted value is replaced by.
MARKER: Final = "[REDACTED]"

# --------------------------------------------------------------------------------------------
# Key names
# --------------------------------------------------------------------------------------------

# Compared against the "compact" key: lower case, camelCase split, then '_', '-', ' ' removed.
_EXACT_KEYS: Final = frozenset(
    {
        "auth",
        "pwd",
        "token",
        "signature",
        "pin",
        "pinblock",
        "pincode",
        "cvv",
        "cvc",
        "cvv2",
        "cvc2",
        "cvn",
        "csc",
        "cav2",
        "securitycode",
        "track",
        "trackdata",
        "track1",
        "track2",
        "track3",
        "track1data",
        "track2data",
        "track3data",
    }
)
# A key containing one of these is sensitive wherever it occurs ("db_password", "clientSecret").
_CONTAINS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "credential",
    "privatekey",
    "signingkey",
    "accesskey",
    "hmackey",
    "cookie",
)
# A key ending in one of these is sensitive ("x-webhook-signature", "access_token"); a suffix
# rather than "contains" so that "authorization_code" (an approval code, printed on receipts)
# stays readable. ("token" and "signature" anywhere count too, by the HTTP fragments below.)
_ENDS: Final = (
    "authorization",
    "token",
    "signature",
    "securitycode",
    "verificationcode",
    "verificationvalue",
    "cvv",
    "cvc",
    "cvv2",
    "cvc2",
    "pinblock",
    "trackdata",
)
# HTTP header and query parameter names, compared against the stripped, lower-cased name as it
# is: exact names, and fragments anywhere in it. These catch provider-specific credentials
# (2Checkout's "X-Avangate-Authentication") and signature headers ("xentral-signature",
# "X-Afterpay-Request-Signature") without listing each one.
_HTTP_EXACT: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-avangate-authentication",
    }
)
_HTTP_CONTAINS: Final = (
    "signature",
    "secret",
    "token",
    "password",
    "passwd",
    "api_key",
    "apikey",
)
# Compact keys that stay readable although a fragment above is in them: the OAuth token type
# ("Bearer", not the token) and a verification flag. Nothing else is exempt.
_READABLE: Final = frozenset({"tokentype", "signaturevalid"})
# Keys whose unquoted text value runs to the end of the line ("Cookie: a=1; b=2").
_LINE_VALUED: Final = frozenset({"authorization", "proxyauthorization", "cookie", "setcookie"})

_CAMEL_RE: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@lru_cache(maxsize=4096)
def _compact_key(key: str) -> str:
    # Only the last dotted segment names the field ("headers.authorization").
    last = key.rsplit(".", 1)[-1]
    return _CAMEL_RE.sub("_", last).lower().replace("_", "").replace("-", "").replace(" ", "")


@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """Whether the value stored under ``key`` must never be shown (case and style insensitive).

    ``Authorization``, ``X-Api-Key``, ``X-Avangate-Authentication``, ``client_secret``,
    ``accessToken``, ``Stripe-Signature``, ``cardSecurityCode``, ``track2``, ``pin_block``,
    ``terminal_pin`` are; ``authorization_code``, ``token_type``, ``signature_valid``, ``pan``
    (masked by the PAN rule instead) and ``idempotency_key`` are not.
    """
    compact = _compact_key(key)
    if compact in _READABLE:
        return False
    if compact and (compact in _EXACT_KEYS or compact.endswith(_ENDS)):
        return True
    if any(fragment in compact for fragment in _CONTAINS):
        return True
    # The whole name as it is: also a dotted one whose last segment says nothing ("token.v").
    low = key.strip().lower()
    if low in _HTTP_EXACT or any(fragment in low for fragment in _HTTP_CONTAINS):
        return True
    # "terminal_pin", "operator-pin": a PIN by any other name (checked on the separated form so
    # that words merely ending in "pin", like "shippin", do not count).
    normalized = _CAMEL_RE.sub("_", key.rsplit(".", 1)[-1]).lower().replace("-", "_")
    return normalized.endswith("_pin")


def _is_line_valued(key: str) -> bool:
    return _compact_key(key) in _LINE_VALUED


# --------------------------------------------------------------------------------------------
# key=value in text, Bearer/Basic, URL passwords
# --------------------------------------------------------------------------------------------

# Gate for the text key/value rules: without one of these fragments none of them can apply.
# Searched in the lower-cased text: sre is several times slower with IGNORECASE alternations.
# Grouped by first letter, which lets sre reject most positions after one comparison.
_KEYWORD_GATE_RE: Final = re.compile(
    r"a(?:uth)|b(?:earer|asic)|c(?:ookie|redential|v[cvn]|sc|av)|k(?:ey)|p(?:ass|wd|in)"
    r"|s(?:ecret|ign|ecurity)|t(?:oken|rack)|v(?:erification)|://"
)
_KEYWORD_GATE_I_RE: Final = re.compile(_KEYWORD_GATE_RE.pattern, re.IGNORECASE)
# ``key`` followed by ``:`` or ``=``, the key optionally quoted ("k", 'k', or \"k\" inside a
# JSON string). The value is matched separately because its extent depends on the key.
_KV_KEY_RE: Final = re.compile(
    r"""(?<![A-Za-z0-9_])(?P<q>\\?["']|)(?P<key>[A-Za-z_][A-Za-z0-9_.\-]{0,79})(?P=q)"""
    r"""[ \t]*(?P<sep>[:=])[ \t]*"""
)
_V_MARKER_RE: Final = re.compile(re.escape(MARKER))
_V_QUOTED_RE: Final = re.compile(
    r'(?P<o>")(?P<v>(?:[^"\\\r\n]|\\.)*)"'
    r"|(?P<o2>')(?P<v2>(?:[^'\\\r\n]|\\.)*)'"
    r'|(?P<o3>\\")(?P<v3>(?:(?!\\").)*?)\\"'
    r"|(?P<o4>\\')(?P<v4>(?:(?!\\').)*?)\\'"
)
_V_SCHEME_RE: Final = re.compile(
    r"(?:bearer|basic|digest|token|negotiate|apikey|hmac[\w-]*)[ \t]+[^\s,;&'\"<>]+",
    re.IGNORECASE,
)
_V_LINE_RE: Final = re.compile(r"[^\r\n'\"]+")
_V_PLAIN_RE: Final = re.compile(r"[^\s,;&'\"<>(){}\[\]]+")

# A token68 (RFC 7235) standing alone: "Bearer signature_valid=true" is a key=value, not a token.
_BEARER_RE: Final = re.compile(
    r"\b(?P<s>bearer|basic)[ \t]+(?P<t>[A-Za-z0-9\-._~+/]+=*)(?![A-Za-z0-9\-._~+/=])", re.I
)
_USERINFO_RE: Final = re.compile(r"(?P<pre>://[^/\s:@]*:)(?P<pw>[^/\s@]+)@")


_IDENT_CHARS: Final = frozenset(string.ascii_letters + string.digits + "_.-")


def _key_around(text: str, hit_start: int, hit_end: int) -> re.Match[str] | None:
    """The ``key: `` / ``key=`` match whose key contains the keyword at ``hit_start``, if any."""
    start = hit_start
    while start > 0 and text[start - 1] in _IDENT_CHARS:
        start -= 1
    while start < hit_start and text[start] in "-.":  # "--password=x": the key is "password"
        start += 1
    for quote_len in (2, 1, 0):  # \"key\", "key" or 'key', bare key
        if start - quote_len < 0:
            continue
        m = _KV_KEY_RE.match(text, start - quote_len)
        if m is not None and m.start("key") == start and m.end("key") >= hit_end:
            return m
    return None


def _redact_kv(text: str, lowered: str | None) -> str:
    """Mask the values of sensitive keys in ``text``.

    Scanning for every ``key=`` and then classifying it is slow on JSON lines with many keys,
    so this starts from the (few) keyword hits instead and looks around each one for a key.
    ``lowered`` is ``text.lower()`` when that has the same length (so offsets agree), else
    ``None`` and the slower case-insensitive search is used.
    """
    hits = (
        _KEYWORD_GATE_RE.finditer(lowered)
        if lowered is not None
        else _KEYWORD_GATE_I_RE.finditer(text)
    )
    pieces: list[str] = []
    pos = 0  # everything before ``pos`` is settled
    search_at = 0  # nothing before this can start a key
    for hit in hits:
        if hit.start() < search_at:
            continue
        m = _key_around(text, hit.start(), hit.end())
        if m is None or m.start() < search_at:
            continue
        value_at = m.end()
        search_at = value_at
        if not is_sensitive_key(m.group("key")):
            continue
        if _V_MARKER_RE.match(text, value_at):
            search_at = value_at + len(MARKER)
            continue
        quoted = _V_QUOTED_RE.match(text, value_at)
        if quoted is not None:
            opener, inner = next(
                (quoted[o], quoted[v])
                for o, v in (("o", "v"), ("o2", "v2"), ("o3", "v3"), ("o4", "v4"))
                if quoted[o] is not None
            )
            if inner and inner != MARKER:
                pieces.append(text[pos:value_at])
                pieces.append(f"{opener}{MARKER}{opener}")
                pos = quoted.end()
            search_at = quoted.end()
            continue
        value = _V_SCHEME_RE.match(text, value_at)
        if value is None and m["sep"] == ":" and _is_line_valued(m["key"]):
            value = _V_LINE_RE.match(text, value_at)
        if value is None:
            value = _V_PLAIN_RE.match(text, value_at)
        if value is None:
            # e.g. "authorization": {...}: nothing to mask here, nested keys are still scanned.
            continue
        pieces.append(text[pos:value_at])
        pieces.append(MARKER)
        pos = search_at = value.end()
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


def _looks_like_basic(token: str) -> bool:
    # Only credentials that decode to "user:password"; "Basic information" stays readable.
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in raw


# Words that follow "Bearer" in our own prose ("missing Bearer token"); any other word is
# taken for a credential, because a false alarm costs readability and a miss costs a secret.
_NOT_A_TOKEN: Final = frozenset(
    {"token", "tokens", "auth", "authentication", "scheme", "header", "required", "missing"}
)


def _auth_scheme_sub(m: re.Match[str]) -> str:
    if m["s"].lower() == "basic" and not _looks_like_basic(m["t"]):
        return m.group()
    if m["t"].lower() in _NOT_A_TOKEN:
        return m.group()
    return f"{m['s']} {MARKER}"


def redact_key_values(text: str) -> str:
    """``text`` with sensitive ``key=value`` values, ``Bearer``/``Basic`` credentials and URL
    passwords masked (the same object when there is none)."""
    lowered = text.lower()
    # str.lower() can change the length of rare characters; offsets must agree.
    out = _redact_kv(text, lowered if len(lowered) == len(text) else None)
    if "://" in out:
        out = _USERINFO_RE.sub(lambda m: f"{m['pre']}{MARKER}@", out)
    if "bearer" in lowered or "basic" in lowered:
        out = _BEARER_RE.sub(_auth_scheme_sub, out)
    return out
