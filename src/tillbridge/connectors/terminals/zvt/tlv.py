"""The ZVT TLV container (BMP 06): BER-like tags and lengths.

Tags: if the low five bits of the first byte are all set (``1F``), more tag bytes follow, each
with bit 8 set except the last (``1F 07``, ``1F 80 00``). Bit 6 (``20``) of the first byte marks
a constructed object whose value is itself a TLV sequence. Lengths: below ``80`` the byte is the
length; ``81 LL`` one length byte; ``82 HH LL`` two bytes big-endian.

Tags are handled as integers of their bytes, big-endian: ``1F 07`` is ``0x1F07``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from tillbridge.errors import ProtocolError

MAX_TAG_BYTES: Final = 4
MAX_LENGTH: Final = 0xFFFF

# Tags this package reads or writes.
TEXT_LINE: Final = 0x07
ATTRIBUTE: Final = 0x09
PERMITTED_COMMAND: Final = 0x0A
CHARSET: Final = 0x14
DISPLAY_TEXTS: Final = 0x24
PRINT_TEXTS: Final = 0x25
PERMITTED_COMMANDS: Final = 0x26
RECEIPT_TYPE: Final = 0x1F07
EXTENDED_ERROR_CODE: Final = 0x1F16
EXTENDED_ERROR_TEXT: Final = 0x1F17
RECEIPT_NUMBER_SYNC: Final = 0x1F1F


def tag_bytes(tag: int) -> bytes:
    """The wire bytes of ``tag``; raises ``ValueError`` if they are not a well-formed tag."""
    if tag < 0:
        raise ValueError("negative tag")
    raw = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    if len(raw) > MAX_TAG_BYTES:
        raise ValueError(f"tag {tag:X} longer than {MAX_TAG_BYTES} bytes")
    multi = (raw[0] & 0x1F) == 0x1F
    if not multi and len(raw) > 1:
        raise ValueError(f"tag {tag:X}: first byte does not announce more tag bytes")
    if multi:
        if len(raw) == 1:
            raise ValueError(f"tag {tag:X}: announces more tag bytes but has none")
        if any(b & 0x80 == 0 for b in raw[1:-1]) or raw[-1] & 0x80:
            raise ValueError(f"tag {tag:X}: continuation bits are inconsistent")
    return raw


def is_constructed(tag: int) -> bool:
    return bool(tag_bytes(tag)[0] & 0x20)


@dataclass(frozen=True, slots=True)
class Tlv:
    """One TLV object. For constructed tags ``value`` holds the encoded children."""

    tag: int
    value: bytes = b""

    def __post_init__(self) -> None:
        tag_bytes(self.tag)
        if len(self.value) > MAX_LENGTH:
            raise ValueError("TLV value too long")

    @classmethod
    def of(cls, tag: int, children: Iterable[Tlv]) -> Tlv:
        """A constructed object holding ``children``."""
        return cls(tag, encode_tlv(children))

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def children(self) -> list[Tlv]:
        """Decode the value as a TLV sequence (raises :class:`ProtocolError` if it is not one)."""
        return decode_tlv(self.value)

    def __repr__(self) -> str:
        return f"Tlv({self.tag:X}, {len(self.value)} bytes)"


def encode_length(n: int) -> bytes:
    if n < 0 or n > MAX_LENGTH:
        raise ValueError(f"TLV length {n} out of range")
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    return b"\x82" + n.to_bytes(2, "big")


def decode_length(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Return ``(length, next_pos)`` of the BER length at ``pos``."""
    if pos >= len(data):
        raise ProtocolError("TLV length missing", code="zvt_bad_tlv")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    if first == 0x81:
        if pos + 2 > len(data):
            raise ProtocolError("TLV length truncated", code="zvt_bad_tlv")
        return data[pos + 1], pos + 2
    if first == 0x82:
        if pos + 3 > len(data):
            raise ProtocolError("TLV length truncated", code="zvt_bad_tlv")
        return int.from_bytes(bytes(data[pos + 1 : pos + 3]), "big"), pos + 3
    raise ProtocolError(f"unsupported TLV length byte {first:02X}", code="zvt_bad_tlv")


def _decode_tag(data: bytes, pos: int) -> tuple[int, int]:
    start = pos
    first = data[pos]
    pos += 1
    if (first & 0x1F) == 0x1F:
        while True:
            if pos >= len(data):
                raise ProtocolError("TLV tag truncated", code="zvt_bad_tlv")
            b = data[pos]
            pos += 1
            if pos - start > MAX_TAG_BYTES:
                raise ProtocolError("TLV tag too long", code="zvt_bad_tlv")
            if not b & 0x80:
                break
    return int.from_bytes(data[start:pos], "big"), pos


def decode_tlv(data: bytes) -> list[Tlv]:
    """Decode a whole TLV sequence; trailing or missing bytes raise :class:`ProtocolError`."""
    items: list[Tlv] = []
    pos = 0
    while pos < len(data):
        tag, pos = _decode_tag(data, pos)
        length, pos = decode_length(data, pos)
        end = pos + length
        if end > len(data):
            raise ProtocolError(
                f"TLV {tag:X} claims {length} bytes, {len(data) - pos} left", code="zvt_bad_tlv"
            )
        items.append(Tlv(tag, bytes(data[pos:end])))
        pos = end
    return items


def encode_tlv(items: Iterable[Tlv]) -> bytes:
    out = bytearray()
    for item in items:
        out += tag_bytes(item.tag)
        out += encode_length(len(item.value))
        out += item.value
    return bytes(out)


def find(items: Sequence[Tlv], tag: int) -> Tlv | None:
    """The first object with ``tag`` at this level, or ``None``."""
    for item in items:
        if item.tag == tag:
            return item
    return None


def find_all(items: Sequence[Tlv], tag: int) -> list[Tlv]:
    return [item for item in items if item.tag == tag]
