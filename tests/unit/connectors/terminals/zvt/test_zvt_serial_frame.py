"""Serial framing: CRC-16/KERMIT, DLE doubling, incremental decoding, broken frames."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tillbridge.connectors.terminals.zvt.apdu import Apdu
from tillbridge.connectors.terminals.zvt.serial_frame import (
    EventKind,
    FrameDecoder,
    crc16_kermit,
    encode_frame,
    stuff,
)


def test_crc_check_value() -> None:
    assert crc16_kermit(b"123456789") == 0x2189


def test_real_captures() -> None:
    # From the reference: an ACK APDU and a Status-Enquiry with password 123456.
    assert encode_frame(bytes.fromhex("800000")) == bytes.fromhex("1002800000 1003F51F")
    assert encode_frame(bytes.fromhex("050103123456")) == bytes.fromhex("1002050103123456 1003E043")


def test_dle_doubling() -> None:
    assert stuff(bytes.fromhex("061003")) == bytes.fromhex("06101003")
    frame = encode_frame(Apdu(0x06, 0x01, bytes.fromhex("041010")).encode())
    assert bytes.fromhex("10101010") in frame  # both data DLEs doubled
    events = FrameDecoder().feed(frame)
    assert [e.kind for e in events] == [EventKind.FRAME]
    assert events[0].apdu == Apdu(0x06, 0x01, bytes.fromhex("041010"))


apdus = st.builds(
    Apdu, st.sampled_from([0x04, 0x06, 0x80, 0x84]), st.integers(0, 255), st.binary(max_size=300)
)


@given(st.lists(apdus, min_size=1, max_size=4), st.integers(1, 9))
def test_decoder_round_trip_any_fragmentation(items: list[Apdu], chunk: int) -> None:
    stream = b"\x06".join(encode_frame(a.encode()) for a in items)  # ACK bytes in between
    decoder = FrameDecoder()
    events = []
    for i in range(0, len(stream), chunk):
        events += decoder.feed(stream[i : i + chunk])
    frames = [e.apdu for e in events if e.kind is EventKind.FRAME]
    assert frames == items
    assert sum(e.kind is EventKind.ACK for e in events) == len(items) - 1
    assert not decoder.in_frame


def test_wrong_crc_is_a_bad_frame_not_a_crash() -> None:
    frame = bytearray(encode_frame(bytes.fromhex("800000")))
    frame[-1] ^= 0xFF
    (event,) = FrameDecoder().feed(bytes(frame))
    assert event.kind is EventKind.BAD_FRAME
    assert "CRC" in event.reason


def test_frame_without_valid_apdu_is_bad() -> None:
    (event,) = FrameDecoder().feed(encode_frame(bytes.fromhex("060105")))  # truncated APDU
    assert event.kind is EventKind.BAD_FRAME


def test_invalid_dle_sequence_and_restart() -> None:
    decoder = FrameDecoder()
    (bad,) = decoder.feed(bytes.fromhex("10028000 1041"))
    assert bad.kind is EventKind.BAD_FRAME
    good = decoder.feed(encode_frame(bytes.fromhex("800000")))
    assert [e.kind for e in good] == [EventKind.FRAME]


def test_new_frame_start_inside_a_frame() -> None:
    decoder = FrameDecoder()
    events = decoder.feed(bytes.fromhex("100280") + encode_frame(bytes.fromhex("800000")))
    assert [e.kind for e in events] == [EventKind.BAD_FRAME, EventKind.FRAME]


def test_garbage_outside_frames_is_counted_and_skipped() -> None:
    decoder = FrameDecoder()
    events = decoder.feed(b"hello" + encode_frame(bytes.fromhex("800000")) + b"\x15")
    assert [e.kind for e in events] == [EventKind.FRAME, EventKind.NAK]
    assert decoder.garbage == 5


def test_truncated_frame_waits_and_reports_in_frame() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(bytes.fromhex("800000"))[:-2]) == []
    assert decoder.in_frame  # the T1 timer runs now
    decoder.reset()
    assert not decoder.in_frame


@given(st.binary(max_size=200))
def test_decoder_never_raises(data: bytes) -> None:
    FrameDecoder().feed(data)
