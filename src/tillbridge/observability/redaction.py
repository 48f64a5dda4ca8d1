"""The one redaction step shared by the logs and the audit log (design invariant 6).

A :class:`Redactor` masks, in free text and in nested structures:

* **PANs**: 13 to 19 ASCII digits, possibly in groups separated by one space or dash, that pass
  the Luhn check. At most the first 6 and the last 4 digits stay; the rest become ``*`` in place
  (``4111111111111111`` -> ``411111******1111``; separators are kept). A PAN glued to other
  digits (``54111111111111111``) is a different, longer number and is not one.
* **Track data** (``;PAN=YYMM...?``, ``%BPAN^NAME^YYMM...?``, EMV tag 57 style ``PAN D YYMM``):
  replaced whole by :data:`MARKER`.
* **Values of sensitive keys** (see :func:`is_sensitive_key`): authorization headers, cookies,
  API keys, signatures, passwords, secrets, tokens, CVV/CVC/CSC, track data, PIN blocks. In
  structures the value is replaced; in text ``key=value``, ``key: value``, ``"key": "value"``
  (also JSON escaped inside a JSON string) and ``'key': 'value'`` are recognised.
* ``Bearer <token>`` anywhere, ``Basic <credentials>`` when the credentials decode as
  ``user:password``, and the password of ``scheme://user:password@host`` URLs.
* **Configured secret values**, as exact substrings, longest first. Values shorter than
  :data:`MIN_SECRET_LEN` characters, and substrings of :data:`MARKER`, are ignored: they would
  mangle every line (or, for the latter, could never be removed).

Contract: :meth:`Redactor.redact_text` is idempotent (``f(f(x)) == f(x)``) and never raises on
any ``str``. Text with nothing sensitive is returned unchanged (the same object). The cost on a
line with nothing sensitive is a few C-level regex scans; the Luhn work only starts when the
text holds at least 12 digits close together.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from tillbridge.settings import Settings

__all__ = ["MARKER", "MIN_SECRET_LEN", "Redactor", "is_sensitive_key", "luhn_valid"]

#: What a redacted value is replaced by.
MARKER: Final = "[REDACTED]"
#: Configured secrets shorter than this are ignored (a 3-character "secret" would mask noise).
MIN_SECRET_LEN: Final = 4
#: Nesting depth after which :meth:`Redactor.redact` stops recursing and redacts ``str(obj)``.
MAX_DEPTH: Final = 32
#: Passes of the text pipeline before giving up and returning :data:`MARKER` (see redact_text).
MAX_PASSES: Final = 4

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
# and "token_type" or "signature_valid" stay readable.
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

    ``Authorization``, ``X-Api-Key``, ``client_secret``, ``accessToken``, ``Stripe-Signature``,
    ``cardSecurityCode``, ``track2``, ``pin_block``, ``terminal_pin`` are; ``authorization_code``,
    ``token_type``, ``pan`` (masked by the PAN rule instead) and ``idempotency_key`` are not.
    """
    compact = _compact_key(key)
    if not compact:
        return False
    if compact in _EXACT_KEYS or compact.endswith(_ENDS):
        return True
    if any(fragment in compact for fragment in _CONTAINS):
        return True
    # "terminal_pin", "operator-pin": a PIN by any other name (checked on the separated form so
    # that words merely ending in "pin", like "shippin", do not count).
    normalized = _CAMEL_RE.sub("_", key.rsplit(".", 1)[-1]).lower().replace("-", "_")
    return normalized.endswith("_pin")


def _is_line_valued(key: str) -> bool:
    return _compact_key(key) in _LINE_VALUED


# --------------------------------------------------------------------------------------------
# PANs and track data
# --------------------------------------------------------------------------------------------

# Cheap gate: 12 digits with at most single separators between them. Nothing below it can hold
# a PAN (13+) or track data (12+), so most log lines stop here.
_DIGITS_GATE_RE: Final = re.compile(r"[0-9](?:[ -]?[0-9]){11}")
# A run: digit groups separated by exactly one space or dash.
_RUN_RE: Final = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_GROUP_RE: Final = re.compile(r"[0-9]+")
_TRACK_RE: Final = re.compile(
    r"%?B[0-9]{12,19}\^[^^\r\n]{0,26}\^[0-9]{4}[^?\s^]*\??"  # track 1
    r"|;[0-9]{12,19}=[0-9]{4}[0-9]*\??"  # track 2 with its start sentinel
    r"|(?<![0-9])[0-9]{12,19}[=D][0-9]{7,}F?(?![0-9])"  # track 2 / EMV tag 57 without sentinel
)
_DOUBLED: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of ASCII digits (empty is not valid)."""
    if not digits:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _DOUBLED[d] if i & 1 else d
    return total % 10 == 0


def _mask_run(run: str) -> str | None:
    """Mask every PAN in one run of digit groups; ``None`` when there is none.

    Every sequence of whole, consecutive groups with 13 to 19 digits is a candidate: that finds
    ``4111 1111 1111 1111`` after ``qty 5 `` as well as ``4111111111111111`` on its own.
    """
    spans = [(m.start(), m.end()) for m in _GROUP_RE.finditer(run)]
    positions: list[int] = []  # index in ``run`` of the n-th digit
    bounds: list[tuple[int, int]] = []  # digit-index range of each group
    for start, end in spans:
        bounds.append((len(positions), len(positions) + end - start))
        positions.extend(range(start, end))
    if len(positions) < 13:
        return None
    digits = run.replace(" ", "").replace("-", "")
    masked: set[int] = set()
    for gi, (first, _) in enumerate(bounds):
        for gj in range(gi, len(bounds)):
            length = bounds[gj][1] - first
            last = bounds[gj][1]
            if length > 19:
                break
            if length >= 13 and luhn_valid(digits[first:last]):
                masked.update(range(first + 6, last - 4))
    if not masked:
        return None
    chars = list(run)
    for index in masked:
        chars[positions[index]] = "*"
    return "".join(chars)


def _mask_pans(text: str) -> str:
    pieces: list[str] = []
    pos = 0
    for m in _RUN_RE.finditer(text):
        if m.end() - m.start() < 13:
            continue
        replaced = _mask_run(m.group())
        if replaced is not None:
            pieces.append(text[pos : m.start()])
            pieces.append(replaced)
            pos = m.end()
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


# --------------------------------------------------------------------------------------------
# key=value in text, Bearer/Basic, URL passwords
# --------------------------------------------------------------------------------------------

# Gate for the text key/value rules: without one of these fragments none of them can apply.
# Searched in the lower-cased text: sre is several times slower with IGNORECASE alternations.
_KEYWORD_GATE_RE: Final = re.compile(
    r"auth|cookie|key|pass|pwd|secret|token|sign|cv[cvn]|csc|cav|security|verification|track"
    r"|pin|bearer|basic|credential|://"
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


# --------------------------------------------------------------------------------------------
# The redactor
# --------------------------------------------------------------------------------------------


class Redactor:
    """Masks card data and secrets in text and nested structures; see the module docstring.

    ``Redactor(["s3cr3t-api-key"]).redact_text("key s3cr3t-api-key")`` -> ``"key [REDACTED]"``.

    **Parameters:** ``secrets``: exact values to mask anywhere (API keys, webhook secrets,
    passwords from the configuration). Build one per process and share it: the logging set-up
    and the audit log must use the same instance so that both hide the same things.
    """

    __slots__ = ("_secret_re",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        usable = {s for s in secrets if len(s) >= MIN_SECRET_LEN and s not in MARKER}
        # Longest first so that a secret containing another one is masked whole.
        ordered = sorted(usable, key=lambda s: (-len(s), s))
        self._secret_re: re.Pattern[str] | None = (
            re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None
        )

    @classmethod
    def from_settings(cls, settings: Settings, extra: Iterable[str] = ()) -> Redactor:
        """A redactor for ``settings.redact_values``, the database password (if the URL has
        one) and ``extra``."""
        values = [v.get_secret_value() for v in settings.redact_values]
        password = _url_password(settings.database_url)
        if password:
            values.append(password)
        values.extend(extra)
        return cls(values)

    def redact_text(self, text: str) -> str:
        """``text`` with every PAN, track, secret and sensitive ``key=value`` masked.

        The rules are applied as one pass; a pass can expose what an earlier rule of the same
        pass would have caught (a masked run leaves shorter groups behind, a removed secret
        joins its neighbours), so passes repeat until nothing changes. Real text settles in
        one or two passes; if crafted input is still changing after :data:`MAX_PASSES`, the
        whole text becomes :data:`MARKER`, which bounds the cost and keeps the result stable.
        """
        if not text:
            return text
        current = self._pass(text)
        if current is text:
            return text
        for _ in range(MAX_PASSES - 1):
            following = self._pass(current)
            if following == current:
                return current
            current = following
        return MARKER

    def _pass(self, text: str) -> str:
        out = text
        if _DIGITS_GATE_RE.search(out) is not None:
            # Track data first: the PAN rule alone would leave expiry and service code behind.
            out = _TRACK_RE.sub(MARKER, out)
            out = _mask_pans(out)
        lowered = out.lower()
        if _KEYWORD_GATE_RE.search(lowered) is not None:
            # str.lower() can change the length of rare characters; offsets must agree.
            out = _redact_kv(out, lowered if len(lowered) == len(out) else None)
            out = _USERINFO_RE.sub(lambda m: f"{m['pre']}{MARKER}@", out)
            out = _BEARER_RE.sub(_auth_scheme_sub, out)
        if self._secret_re is not None:
            # Last, so that nothing rewritten above can re-create a configured secret.
            out = self._secret_re.sub(MARKER, out)
        # Hand back the very same object when nothing changed: callers use ``is`` as a fast path.
        return text if out == text else out

    def redact(self, obj: Any) -> Any:
        """A redacted copy of ``obj``; the input is never modified.

        ``str`` -> :meth:`redact_text`; mappings -> ``dict`` (keys redacted as text, the value
        of a sensitive key replaced by :data:`MARKER` unless it is ``None`` or empty); lists,
        tuples, sets keep their kind; ``None``, ``bool`` and ``float`` pass through; an ``int``
        that is a PAN becomes its masked string; any other object becomes its redacted
        ``str()`` (that is how a log renderer or a JSON column would show it anyway).
        """
        return self._redact(obj, 0)

    def _redact(self, obj: Any, depth: int) -> Any:
        if isinstance(obj, str):
            return self.redact_text(obj)
        if obj is None or isinstance(obj, (bool, float)):
            return obj
        if isinstance(obj, int):
            if -(10**12) < obj < 10**12:
                return obj
            as_text = str(obj)
            redacted = self.redact_text(as_text)
            return obj if redacted is as_text else redacted
        if depth >= MAX_DEPTH:
            return self.redact_text(str(obj))
        if isinstance(obj, Mapping):
            return {self._redact_key(k): self._redact_item(k, v, depth + 1) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._redact(v, depth + 1) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self._redact(v, depth + 1) for v in obj)
        if isinstance(obj, (set, frozenset)):
            return type(obj)(self._redact(v, depth + 1) for v in obj)
        return self.redact_text(str(obj))

    def _redact_key(self, key: Any) -> Any:
        return self.redact_text(key) if isinstance(key, str) else key

    def _redact_item(self, key: Any, value: Any, depth: int) -> Any:
        if (
            isinstance(key, str)
            and value is not None
            and value != ""
            and (is_sensitive_key(key) or is_sensitive_key(self.redact_text(key)))
        ):
            return MARKER
        return self._redact(value, depth)


def _url_password(url: str) -> str | None:
    m = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:(?P<pw>[^/\s@]+)@", url)
    return m["pw"] if m else None
