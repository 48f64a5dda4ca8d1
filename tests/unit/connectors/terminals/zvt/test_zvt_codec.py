"""APDU, BMP, TLV and text codecs: round trips, spec vectors, and bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillbridge.connectors.terminals.zvt import bmp as B
from tillbridge.connectors.terminals.zvt import tlv as T
from tillbridge.connectors.terminals.zvt.apdu import KNOWN_CLASSES, Apdu, ApduReader, decode_apdu
from tillbridge.errors import ProtocolError

classes = st.sampled_from(sorted(KNOWN_CLASSES))
apdus = st.builds(Apdu, classes, st.integers(0, 255), st.binary(max_size=700))


# APDU -----------------------------------------------------------------------------------------


def test_short_and_extended_length_encoding() -> None:
    assert Apdu(0x80, 0x00).encode() == bytes.fromhex("800000")
    assert Apdu(0x06, 0xD3, b"\x00" * 254).encode()[:3] == bytes.fromhex("06D3FE")
    # 255 bytes and more: FF and a 2-byte little-endian length.
    assert Apdu(0x06, 0xD3, b"\x00" * 255).encode()[:5] == bytes.fromhex("06D3FFFF00")
    assert Apdu(0x06, 0xD3, b"\x00" * 0x03E3).encode()[:5] == bytes.fromhex("06D3FFE303")


@given(apdus)
def test_apdu_round_trip(apdu: Apdu) -> None:
    assert decode_apdu(apdu.encode()) == apdu


@given(st.lists(apdus, min_size=1, max_size=5), st.integers(1, 17))
def test_reader_handles_any_fragmentation(items: list[Apdu], chunk: int) -> None:
    stream = b"".join(a.encode() for a in items)
    reader = ApduReader()
    out: list[Apdu] = []
    for i in range(0, len(stream), chunk):
        reader.feed(stream[i : i + chunk])
        while (apdu := reader.next()) is not None:
            out.append(apdu)
    assert out == items
    assert reader.pending() == 0


def test_reader_byte_by_byte_and_several_in_one_read() -> None:
    stream = bytes.fromhex("800000") + bytes.fromhex("04FF0101") + bytes.fromhex("060F00")
    reader = ApduReader()
    got = []
    for b in stream:
        reader.feed(bytes((b,)))
        if (apdu := reader.next()) is not None:
            got.append(apdu.control)
    assert got == [(0x80, 0x00), (0x04, 0xFF), (0x06, 0x0F)]
    reader.feed(stream)
    assert [reader.next(), reader.next(), reader.next(), reader.next()][3] is None


@pytest.mark.parametrize(
    ("garbage", "hint"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n", "printable text"),
        (bytes.fromhex("150369"), "serial"),
        (bytes.fromhex("1002800000"), "DLE"),
    ],
)
def test_garbage_is_a_clear_protocol_error(garbage: bytes, hint: str) -> None:
    reader = ApduReader()
    reader.feed(garbage)
    with pytest.raises(ProtocolError, match=hint):
        reader.next()
    with pytest.raises(ProtocolError):  # stays failed: the stream is out of sync
        reader.next()


def test_truncated_and_trailing_bytes() -> None:
    with pytest.raises(ProtocolError, match="truncated"):
        decode_apdu(bytes.fromhex("060105040000"))
    with pytest.raises(ProtocolError, match="after the APDU"):
        decode_apdu(bytes.fromhex("80000000"))


def test_answer_classification() -> None:
    assert Apdu(0x80, 0x00).is_positive_answer()
    assert Apdu(0x84, 0x00).is_positive_answer()
    assert Apdu(0x84, 0x9C).is_positive_answer()
    assert Apdu(0x84, 0x83).is_negative_answer()
    assert "bytes" in repr(Apdu(0x04, 0x0F, b"secret"))  # data is never dumped


# BCD and BMPs ---------------------------------------------------------------------------------


def test_amount_bmp_is_six_bytes_bcd() -> None:
    assert B.encode_bmps([B.amount_bmp(1000)]) == bytes.fromhex("04000000001000")
    with pytest.raises(ValueError):
        B.amount_bmp(-1)
    with pytest.raises(ValueError):
        B.bcd_encode(10**12, 6)


@given(st.integers(0, 999_999_999_999))
def test_bcd_round_trip(n: int) -> None:
    assert B.bcd_int(B.bcd_encode(n, 6)) == n


def test_bcd_rejects_non_decimal_nibbles() -> None:
    with pytest.raises(ProtocolError):
        B.bcd_digits(bytes.fromhex("1A"))


def test_llvar_and_lllvar_prefixes() -> None:
    assert B.encode_bmp(0x22, bytes.fromhex("012345")) == bytes.fromhex("22F0F3012345")
    assert B.encode_bmp(0x3C, b"ok") == bytes.fromhex("3CF0F0F2") + b"ok"
    assert B.decode_bmps(bytes.fromhex("22F0F3012345")) == [(0x22, bytes.fromhex("012345"))]
    with pytest.raises(ProtocolError, match="length prefix"):
        B.decode_bmps(bytes.fromhex("22A0F3012345"))


kept = {k: v for k, v in B.FORMATS.items() if k not in B.SECRET_BMPS}
fixed_bmps = st.sampled_from([k for k, (f, _) in kept.items() if f is B.Fmt.FIXED])
var_bmps = st.sampled_from([k for k, (f, _) in kept.items() if f is not B.Fmt.FIXED])


@st.composite
def bmp_items(draw: st.DrawFn) -> tuple[int, bytes]:
    if draw(st.booleans()):
        bmp = draw(fixed_bmps)
        return bmp, draw(st.binary(min_size=B.FORMATS[bmp][1], max_size=B.FORMATS[bmp][1]))
    bmp = draw(var_bmps)
    limit = 99 if B.FORMATS[bmp][0] is B.Fmt.LLVAR else 400
    return bmp, draw(st.binary(max_size=limit))


@given(st.lists(bmp_items(), max_size=8))
def test_bmp_sequence_round_trip(items: list[tuple[int, bytes]]) -> None:
    assert B.decode_bmps(B.encode_bmps(items)) == items


@given(st.binary(max_size=60))
def test_bmp_decoder_never_crashes(data: bytes) -> None:
    try:
        B.decode_bmps(data)
    except ProtocolError:
        pass


def test_track_data_and_cvv_are_skipped_not_kept() -> None:
    track2 = bytes.fromhex("6725591234567890D25121")
    data = B.encode_bmps([(0x23, track2), (0x3A, bytes.fromhex("123F")), (0x27, b"\x00")])
    assert B.decode_bmps(data) == [(0x23, b""), (0x3A, b""), (0x27, b"\x00")]


def test_unknown_and_truncated_bmps() -> None:
    with pytest.raises(ProtocolError, match="unknown BMP"):
        B.decode_bmps(bytes.fromhex("FE00"))
    with pytest.raises(ProtocolError, match="truncated"):
        B.decode_bmps(bytes.fromhex("040000"))


def test_masked_pan_nibbles() -> None:
    assert B.pan_digits(bytes.fromhex("672559EEEEEE1234")) == "672559******1234"
    assert B.pan_digits(bytes.fromhex("672559123F")) == "672559123"  # F pads odd lengths
    with pytest.raises(ProtocolError):
        B.pan_digits(bytes.fromhex("67AB"))
    assert B.pan_encode("672559******123") == bytes.fromhex("672559EEEEEE123F")


# TLV ------------------------------------------------------------------------------------------


@st.composite
def tags(draw: st.DrawFn) -> int:
    if draw(st.booleans()):
        return draw(st.integers(0, 255).filter(lambda b: b & 0x1F != 0x1F))
    first = draw(st.integers(0, 7)) << 5 | 0x1F
    middle = draw(st.lists(st.integers(0x80, 0xFF), max_size=2))
    last = draw(st.integers(0, 0x7F))
    return int.from_bytes(bytes([first, *middle, last]), "big")


tlvs = st.builds(T.Tlv, tags(), st.binary(max_size=300))


@given(st.lists(tlvs, max_size=6))
def test_tlv_round_trip(items: list[T.Tlv]) -> None:
    assert T.decode_tlv(T.encode_tlv(items)) == items


def test_tlv_lengths_81_and_82() -> None:
    assert T.encode_length(0x7F) == b"\x7f"
    assert T.encode_length(0x80) == bytes.fromhex("8180")
    assert T.encode_length(0x1234) == bytes.fromhex("821234")
    assert T.decode_tlv(bytes.fromhex("1F80000101")) == [T.Tlv(0x1F8000, b"\x01")]


def test_tlv_bad_input() -> None:
    with pytest.raises(ProtocolError):
        T.decode_tlv(bytes.fromhex("0705414243"))  # claims 5, has 3
    with pytest.raises(ProtocolError):
        T.decode_tlv(bytes.fromhex("0783000000"))  # 83 lengths are not ZVT
    with pytest.raises(ProtocolError):
        T.decode_tlv(bytes.fromhex("1F80"))  # tag never ends
    with pytest.raises(ValueError):
        T.Tlv(0x0107)  # first byte does not announce more tag bytes


def test_constructed_tags_nest() -> None:
    block = T.Tlv.of(T.PRINT_TEXTS, [T.Tlv(T.TEXT_LINE, b"a"), T.Tlv(T.ATTRIBUTE, b"\x81")])
    assert block.constructed
    assert [c.tag for c in T.decode_tlv(T.encode_tlv([block]))[0].children()] == [0x07, 0x09]


# text -----------------------------------------------------------------------------------------


def test_cp437_by_default_and_latin1_option() -> None:
    assert B.encode_text("Händler") == b"H\x84ndler"
    assert B.decode_text(b"H\x84ndler") == "Händler"
    assert B.encode_text("Händler", "latin-1") == b"H\xe4ndler"
    assert B.decode_text(b"H\xe4ndler\x00\x00", "latin-1") == "Händler"
