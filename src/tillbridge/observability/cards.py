"""Card data: the Luhn check, the one PAN masker, and card data found in text.

:func:`mask_pan` is the bridge's only rule for showing a card number: at most the first 6 and
the last 4 digits (DESIGN invariant 6). :func:`mask_card_data` applies the same rule to every
Luhn-valid run of 13 to 19 digits inside free text and removes track data; the Redactor
(:mod:`.redaction`) uses it for logs and the audit log, connectors for the masked PAN of a
result. :func:`has_card_data` is the API's test for free-text input it refuses, and
:func:`mask_card_data_json` masks a JSON document (a stored webhook body) without breaking it.
"""

from __future__ import annotations

import json
import re
from typing import Final

from tillbridge.observability._keys import MARKER

# --------------------------------------------------------------------------------------------
# PANs and track data
# --------------------------------------------------------------------------------------------

# Cheap gate: 12 digits with at most single separators between them. Nothing below it can hold
# a PAN (13+) or track data (12+), so most log lines stop here.
# (A superset is fine for a gate, and this simpler form scans about twice as fast.)
_DIGITS_GATE_RE: Final = re.compile(r"[0-9][0-9 -]{11}")
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


_MASK: Final = "*"


def _visible(i: int, n: int) -> bool:
    """Whether digit ``i`` of an ``n``-digit card number may be shown: the first 6 and last 4
    of 13 or more; of a shorter number (a 6+4 rule would reveal almost all of it) only the last
    4, and nothing of 4 digits or fewer."""
    if n >= 13:
        return i < 6 or i >= n - 4
    return n > 4 and i >= n - 4


def mask_pan(pan: str) -> str:
    """Mask a card number field so at most the first 6 and the last 4 digits remain visible.

    Whitespace is dropped; characters that are not digits count as already masked and become
    ``*`` (see :func:`_visible` for short numbers).
    """
    text = "".join(ch for ch in pan if not ch.isspace())
    n = len(text)
    return "".join(ch if _visible(i, n) and ch.isdigit() else _MASK for i, ch in enumerate(text))


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
                masked.update(i for i in range(first, last) if not _visible(i - first, length))
    if not masked:
        return None
    chars = list(run)
    for index in masked:
        chars[positions[index]] = _MASK
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


def mask_card_data(text: str) -> str:
    """``text`` with track data removed and PANs masked (the same object when none)."""
    if _DIGITS_GATE_RE.search(text) is None:
        return text
    # Track data first: the PAN rule alone would leave expiry and service code behind.
    return _mask_pans(_TRACK_RE.sub(MARKER, text))


def has_card_data(text: str) -> bool:
    """Whether ``text`` holds a PAN (a Luhn-valid run of 13 to 19 digits, also in groups of
    digits separated by single spaces or dashes) or track data."""
    return mask_card_data(text) != text


# --------------------------------------------------------------------------------------------
# Card data in a JSON document (a stored webhook body)
# --------------------------------------------------------------------------------------------

# A JSON string literal, or a number. Scanned over a *valid* document, left to right, a '"'
# outside a string always starts a string token, so nothing inside a string is read as a number.
_JSON_TOKEN_RE: Final = re.compile(
    r'"(?:[^"\\]|\\.)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?', re.DOTALL
)
_AFTER_KEY_RE: Final = re.compile(r"\s*:\s*(.)", re.DOTALL)
# Members whose value is card verification or track data by their name, whatever it looks like.
_CARD_KEYS: Final = frozenset(
    {"cvv", "cvc", "cvv2", "cvc2", "cvn", "csc", "cav2", "securitycode", "cardsecuritycode"}
    | {"track", "track1", "track2", "track3", "trackdata", "track1data", "track2data"}
    | {"track3data", "pinblock", "pin"}
)
_CARD_KEY_ENDS: Final = ("cvv", "cvc", "cvv2", "cvc2", "securitycode", "pinblock", "trackdata")


def is_card_data_key(key: str) -> bool:
    """Whether a member called ``key`` holds card verification, PIN or track data
    (``cvv``, ``cardSecurityCode``, ``pin_block``, ``track2``; case and style insensitive)."""
    compact = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower()
    compact = compact.replace("_", "").replace("-", "").replace(" ", "")
    return compact in _CARD_KEYS or compact.endswith(_CARD_KEY_ENDS)


def _masked_number(token: str) -> str | None:
    """A JSON number whose integer part is a PAN, as a JSON string of the masked PAN."""
    digits = token.lstrip("-").split(".", 1)[0].split("e", 1)[0].split("E", 1)[0]
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return '"' + mask_pan(digits) + '"'
    return None


def mask_card_data_json(document: str) -> str:
    """A valid JSON ``document`` with its card data masked; still valid JSON, same structure.

    Every string value (and key) goes through :func:`mask_card_data` (decoded first, so a PAN
    spelt with ``\\u`` escapes is found too); a number that is a PAN becomes a string holding
    the masked PAN; the value of a member named like card verification, PIN or track data
    (:func:`is_card_data_key`) becomes ``"[REDACTED]"``. A document without card data comes back
    as the same object, so callers keep their exact bytes.
    """
    if (
        _DIGITS_GATE_RE.search(document) is None
        and "\\u" not in document
        and not any(
            k in document.lower() for k in ("cv", "csc", "cav", "securitycode", "pin", "track")
        )
    ):
        return document
    pieces: list[str] = []
    pos = 0
    redact_next = False
    for m in _JSON_TOKEN_RE.finditer(document):
        token = m.group()
        replacement: str | None = None
        if token.startswith('"'):
            after = _AFTER_KEY_RE.match(document, m.end())
            is_key = after is not None
            if redact_next and not is_key:
                replacement = json.dumps(MARKER)
            else:
                value = json.loads(token)
                masked = mask_card_data(value)
                if masked != value:
                    replacement = json.dumps(masked, ensure_ascii=False)
            # Only a string or number value is replaced; an object or array under such a name
            # (and true, false, null) is left to the rules above.
            next_redact = (
                after is not None
                and after.group(1) in '"-0123456789'
                and is_card_data_key(json.loads(token))
            )
        else:
            replacement = json.dumps(MARKER) if redact_next else _masked_number(token)
            next_redact = False
        redact_next = next_redact
        if replacement is not None:
            pieces.append(document[pos : m.start()])
            pieces.append(replacement)
            pos = m.end()
    if not pieces:
        return document
    pieces.append(document[pos:])
    return "".join(pieces)
