"""Card data: the Luhn check, the one PAN masker, and card data found in text.

:func:`mask_pan` is the bridge's only rule for showing a card number: at most the first 6 and
the last 4 digits (DESIGN invariant 6). :func:`mask_card_data` applies the same rule to every
Luhn-valid run of 13 to 19 digits inside free text and removes track data; the Redactor
(:mod:`.redaction`) uses it for logs and the audit log, connectors for the masked PAN of a
result.
"""

from __future__ import annotations

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
