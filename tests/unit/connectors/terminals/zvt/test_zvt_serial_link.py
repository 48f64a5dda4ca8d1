"""The serial link's ACK/NAK protocol over an in-process byte stream (no PTY needed)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import anyio
import pytest

from tillbridge.connectors.terminals.zvt.apdu import Apdu
from tillbridge.connectors.terminals.zvt.serial import SerialLink
from tillbridge.connectors.terminals.zvt.serial_frame import encode_frame
from tillbridge.errors import AckMissing, FrameRejected, LinkClosed, LinkTimeout

pytestmark = pytest.mark.anyio

ACK, NAK = b"\x06", b"\x15"


class Wire:
    """The peer's side: records what the link writes; ``respond`` may answer each write."""

    def __init__(self) -> None:
        self.reader = asyncio.StreamReader()
        self.writes: list[bytes] = []
        self.wrote = asyncio.Event()
        self.respond: Callable[[bytes], bytes | None] = lambda data: None

    # The StreamWriter surface SerialLink uses.
    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.wrote.set()
        answer = self.respond(bytes(data))
        if answer:
            self.reader.feed_data(answer)

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.reader.feed_eof()

    async def wait_closed(self) -> None:
        return None

    async def next_write(self) -> bytes:
        with anyio.fail_after(5):
            while not self.writes:
                self.wrote.clear()
                await self.wrote.wait()
        return self.writes.pop(0)


def link(wire: Wire, **kw: Any) -> SerialLink:
    return SerialLink(wire.reader, cast(asyncio.StreamWriter, wire), **kw)


async def test_good_frame_is_acked_and_delivered() -> None:
    wire = Wire()
    serial = link(wire)
    wire.reader.feed_data(encode_frame(bytes.fromhex("800000")))
    assert await serial.recv_apdu(5) == Apdu(0x80, 0x00)
    assert await wire.next_write() == ACK
    await serial.close()


async def test_bad_crc_is_naked() -> None:
    wire = Wire()
    serial = link(wire)
    frame = bytearray(encode_frame(bytes.fromhex("800000")))
    frame[-2] ^= 0x01
    wire.reader.feed_data(bytes(frame))
    assert await wire.next_write() == NAK
    assert serial.stats.naks_sent == 1 and serial.stats.bad_frames == 1
    with pytest.raises(LinkTimeout):
        await serial.recv_apdu(0.05)  # nothing was delivered
    await serial.close()


async def test_gap_longer_than_t1_inside_a_frame_is_naked() -> None:
    wire = Wire()
    serial = link(wire, t1=0.05)
    wire.reader.feed_data(encode_frame(bytes.fromhex("800000"))[:4])
    assert await wire.next_write() == NAK
    # The link recovers: the repeated frame goes through.
    wire.reader.feed_data(encode_frame(bytes.fromhex("800000")))
    assert await serial.recv_apdu(5) == Apdu(0x80, 0x00)
    await serial.close()


async def test_sender_repeats_after_nak_then_succeeds() -> None:
    wire = Wire()
    answers = iter([NAK, ACK])
    wire.respond = lambda data: next(answers) if data.startswith(b"\x10\x02") else None
    serial = link(wire)
    await serial.send_apdu(Apdu(0x06, 0x01, bytes.fromhex("04000000001000")))
    assert serial.stats.repeats == 1 and serial.stats.naks_received == 1
    assert wire.writes[0] == wire.writes[1]  # the same frame, repeated
    await serial.close()


async def test_three_naks_mean_not_sent() -> None:
    wire = Wire()
    wire.respond = lambda data: NAK if data.startswith(b"\x10\x02") else None
    serial = link(wire)
    with pytest.raises(FrameRejected):
        await serial.send_apdu(Apdu(0x80, 0x00))
    assert len(wire.writes) == 3  # first try and at most two repeats
    await serial.close()


async def test_silence_means_ack_missing_with_a_garbage_hint() -> None:
    wire = Wire()
    wire.respond = lambda data: b"HELLO" if data.startswith(b"\x10\x02") else None
    serial = link(wire, t2=0.05)
    with pytest.raises(AckMissing, match="stray bytes"):
        await serial.send_apdu(Apdu(0x80, 0x00))
    await serial.close()


async def test_line_closed() -> None:
    wire = Wire()
    serial = link(wire)
    wire.reader.feed_eof()
    with pytest.raises(LinkClosed):
        await serial.recv_apdu(5)
    with pytest.raises(LinkClosed):
        await serial.send_apdu(Apdu(0x80, 0x00))
    await serial.close()
