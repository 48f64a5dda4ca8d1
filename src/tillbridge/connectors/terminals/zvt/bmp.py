"""ZVT bitmaps (BMPs): the numbered fields inside APDU data, plus BCD and text helpers.

A BMP is one id byte followed by a value whose length is fixed per id, or announced by an
LLVAR (``Fx Fy``) / LLLVAR (``Fx Fy Fz``) prefix whose low nibbles are decimal digits, or (BMP
06) by a TLV length. An unknown id makes the rest of the data unreadable, so decoding raises
:class:`ProtocolError` instead of guessing.

Text is CP437 by default (ZVT 8-bit); some terminals send ISO-8859-1 instead, so every text
helper takes the charset as a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Final, Literal

from tillbridge.connectors.terminals.zvt import tlv
from tillbridge.errors import ProtocolError

Charset = Literal["cp437", "latin-1"]
DEFAULT_CHARSET: Final[Charset] = "cp437"


class Fmt(Enum):
    FIXED = "fixed"
    LLVAR = "llvar"
    LLLVAR = "lllvar"
    TLV = "tlv"


# id -> (format, fixed length). Lengths from the spec's bitmap table (reference §2.4).
_F = Fmt.FIXED
FORMATS: Final[dict[int, tuple[Fmt, int]]] = {
    0x01: (_F, 1), 0x02: (_F, 1), 0x03: (_F, 1), 0x04: (_F, 6), 0x05: (_F, 1),
    0x06: (Fmt.TLV, 0), 0x0B: (_F, 3), 0x0C: (_F, 3), 0x0D: (_F, 2), 0x0E: (_F, 2),
    0x17: (_F, 2), 0x19: (_F, 1), 0x22: (Fmt.LLVAR, 0), 0x23: (Fmt.LLVAR, 0),
    0x24: (Fmt.LLLVAR, 0), 0x27: (_F, 1), 0x29: (_F, 4), 0x2A: (_F, 15),
    0x2D: (Fmt.LLVAR, 0), 0x2E: (Fmt.LLLVAR, 0), 0x37: (_F, 3), 0x3A: (_F, 2),
    0x3B: (_F, 8), 0x3C: (Fmt.LLLVAR, 0), 0x3D: (_F, 3), 0x49: (_F, 2),
    0x4C: (Fmt.LLVAR, 0), 0x60: (Fmt.LLLVAR, 0), 0x87: (_F, 2), 0x88: (_F, 3),
    0x8A: (_F, 1), 0x8B: (Fmt.LLVAR, 0), 0x8C: (_F, 1), 0x92: (Fmt.LLLVAR, 0),
    0x9A: (Fmt.LLLVAR, 0), 0xA0: (_F, 1), 0xA7: (Fmt.LLVAR, 0), 0xAA: (_F, 3),
    0xAF: (Fmt.LLLVAR, 0), 0xBA: (_F, 5), 0xD0: (_F, 1), 0xD1: (Fmt.LLVAR, 0),
    0xD2: (_F, 1), 0xD3: (_F, 1), 0xE0: (_F, 1), 0xE9: (_F, 1), 0xEA: (_F, 1),
    0xEB: (_F, 8), 0xF0: (_F, 1), 0xF9: (_F, 1), 0xFA: (_F, 1), 0xFB: (_F, 1),
    0xFC: (_F, 1),
    **{i: (Fmt.LLVAR, 0) for i in range(0xE1, 0xE9)},
    **{i: (Fmt.LLVAR, 0) for i in range(0xF1, 0xF9)},
}  # fmt: skip

# Ids whose values are card data that must never be kept: track 1/2/3, CVV, PIN data. The
# decoder skips over them and keeps an empty value, so they never reach any data structure.
SECRET_BMPS: Final = frozenset({0x23, 0x24, 0x2D, 0x3A, 0xD1})

Bmps = list[tuple[int, bytes]]
"""Decoded BMPs in wire order: ``(id, value)`` with length prefixes removed."""


# BCD ------------------------------------------------------------------------------------------


def bcd_encode(value: int | str, nbytes: int) -> bytes:
    """Packed BCD, right aligned, zero padded: ``bcd_encode(1000, 6) == 00 00 00 00 10 00``."""
    digits = str(value)
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(f"BCD value must be decimal digits, got {value!r}")
    if len(digits) > nbytes * 2:
        raise ValueError(f"{value!r} does not fit {nbytes} BCD bytes")
    return bytes.fromhex(digits.rjust(nbytes * 2, "0"))


def bcd_digits(raw: bytes) -> str:
    """The decimal digits of packed BCD; a non-decimal nibble raises :class:`ProtocolError`."""
    text = raw.hex()
    if not text.isdigit() and text:
        raise ProtocolError(f"not BCD: {len(raw)} bytes with non-decimal nibbles", code="zvt_bcd")
    return text


def bcd_int(raw: bytes) -> int:
    return int(bcd_digits(raw) or "0")


def pan_digits(raw: bytes) -> str:
    """A PAN from BMP 22: BCD where ``E`` nibbles are masked digits and ``F`` pads to bytes.

    Masked digits come back as ``*``; the caller still applies the 6+4 masking rule.
    """
    out = []
    for ch in raw.hex().upper():
        if ch.isdigit():
            out.append(ch)
        elif ch == "E":
            out.append("*")
        elif ch == "F":
            continue
        else:
            raise ProtocolError("PAN contains an invalid nibble", code="zvt_bcd")
    return "".join(out)


def pan_encode(masked: str) -> bytes:
    """Inverse of :func:`pan_digits`, for simulators: ``*`` becomes ``E``, odd length pads ``F``."""
    nibbles = "".join("E" if ch == "*" else ch for ch in masked)
    if not all(ch.isdigit() or ch == "E" for ch in nibbles):
        raise ValueError("PAN must be digits or '*'")
    if len(nibbles) % 2:
        nibbles += "F"
    return bytes.fromhex(nibbles)


# text -----------------------------------------------------------------------------------------


def decode_text(raw: bytes, charset: Charset = DEFAULT_CHARSET) -> str:
    # Both code pages map all 256 byte values, so decoding cannot fail; trailing NULs are padding.
    return raw.rstrip(b"\x00").decode(charset)


def encode_text(text: str, charset: Charset = DEFAULT_CHARSET) -> bytes:
    return text.encode(charset, errors="replace")


# BMP sequences --------------------------------------------------------------------------------


def _var_length(data: bytes, pos: int, ndigits: int, bmp: int) -> tuple[int, int]:
    if pos + ndigits > len(data):
        raise ProtocolError(f"BMP {bmp:02X}: length prefix truncated", code="zvt_bad_bmp")
    n = 0
    for b in data[pos : pos + ndigits]:
        if b & 0xF0 != 0xF0 or b & 0x0F > 9:
            raise ProtocolError(
                f"BMP {bmp:02X}: bad length prefix byte {b:02X}", code="zvt_bad_bmp"
            )
        n = n * 10 + (b & 0x0F)
    return n, pos + ndigits


def var_prefix(n: int, ndigits: int) -> bytes:
    """The ``Fx Fy [Fz]`` prefix for a value of ``n`` bytes."""
    if n < 0 or n >= 10**ndigits:
        raise ValueError(f"length {n} does not fit {ndigits} digits")
    return bytes(0xF0 | int(d) for d in str(n).rjust(ndigits, "0"))


def decode_bmps(data: bytes, start: int = 0) -> Bmps:
    """Decode a BMP sequence from ``data[start:]``. Raises :class:`ProtocolError` on unknown ids,
    bad prefixes or truncation. Values of :data:`SECRET_BMPS` come back empty."""
    out: Bmps = []
    pos = start
    while pos < len(data):
        bmp = data[pos]
        pos += 1
        spec = FORMATS.get(bmp)
        if spec is None:
            raise ProtocolError(f"unknown BMP {bmp:02X}", code="zvt_unknown_bmp")
        fmt, fixed = spec
        if fmt is Fmt.FIXED:
            n = fixed
        elif fmt is Fmt.LLVAR:
            n, pos = _var_length(data, pos, 2, bmp)
        elif fmt is Fmt.LLLVAR:
            n, pos = _var_length(data, pos, 3, bmp)
        else:
            n, pos = tlv.decode_length(data, pos)
        if pos + n > len(data):
            raise ProtocolError(f"BMP {bmp:02X} truncated", code="zvt_bad_bmp")
        out.append((bmp, b"" if bmp in SECRET_BMPS else bytes(data[pos : pos + n])))
        pos += n
    return out


def encode_bmp(bmp: int, value: bytes) -> bytes:
    spec = FORMATS.get(bmp)
    if spec is None:
        raise ValueError(f"unknown BMP {bmp:02X}")
    fmt, fixed = spec
    if fmt is Fmt.FIXED:
        if len(value) != fixed:
            raise ValueError(f"BMP {bmp:02X} needs {fixed} bytes, got {len(value)}")
        return bytes((bmp,)) + value
    if fmt is Fmt.LLVAR:
        return bytes((bmp,)) + var_prefix(len(value), 2) + value
    if fmt is Fmt.LLLVAR:
        return bytes((bmp,)) + var_prefix(len(value), 3) + value
    return bytes((bmp,)) + tlv.encode_length(len(value)) + value


def encode_bmps(items: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join(encode_bmp(bmp, value) for bmp, value in items)


def get(bmps: Sequence[tuple[int, bytes]], bmp: int) -> bytes | None:
    """The value of the first ``bmp`` in ``bmps``, or ``None``."""
    for key, value in bmps:
        if key == bmp:
            return value
    return None


def tlv_items(bmps: Sequence[tuple[int, bytes]]) -> list[tlv.Tlv]:
    """The TLV objects of BMP 06, or an empty list."""
    raw = get(bmps, 0x06)
    return tlv.decode_tlv(raw) if raw is not None else []


def amount_bmp(minor: int) -> tuple[int, bytes]:
    """BMP 04: the amount in minor units, 6 bytes BCD (at most 999 999 999 999)."""
    if minor < 0:
        raise ValueError("ZVT amounts are unsigned")
    return (0x04, bcd_encode(minor, 6))
