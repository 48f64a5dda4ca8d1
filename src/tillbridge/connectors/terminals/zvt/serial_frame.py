"""ZVT serial framing: ``DLE STX <APDU, DLE doubled> DLE ETX CRC-lo CRC-hi``, ACK and NAK.

The CRC is CRC-16/KERMIT (reflected polynomial 0x8408, initial value 0, no final XOR; check
value of ``b"123456789"`` is 0x2189) over the *unstuffed* APDU bytes plus the ETX byte, sent
low byte first. ACK (06) and NAK (15) travel as single bare bytes outside any frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from tillbridge.connectors.terminals.zvt.apdu import Apdu, decode_apdu
from tillbridge.errors import ProtocolError

DLE: Final = 0x10
STX: Final = 0x02
ETX: Final = 0x03
ACK_BYTE: Final = 0x06
NAK_BYTE: Final = 0x15

# The largest APDU is 5 + 65535 bytes; a frame claiming more is garbage, not a big message.
MAX_FRAME_PAYLOAD: Final = 5 + 0xFFFF


def _table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _table()


def crc16_kermit(data: bytes, crc: int = 0) -> int:
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def stuff(payload: bytes) -> bytes:
    """Double every DLE so none can be mistaken for a frame delimiter."""
    return payload.replace(b"\x10", b"\x10\x10")


def encode_frame(payload: bytes) -> bytes:
    """Frame an encoded APDU for the serial line."""
    crc = crc16_kermit(payload + bytes((ETX,)))
    return bytes((DLE, STX)) + stuff(payload) + bytes((DLE, ETX)) + crc.to_bytes(2, "little")


class EventKind(Enum):
    ACK = "ack"
    NAK = "nak"
    FRAME = "frame"
    BAD_FRAME = "bad_frame"


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """What the decoder recognised: an ACK/NAK byte, a good frame (``apdu``) or a bad one
    (``reason``; the receiver answers it with NAK)."""

    kind: EventKind
    apdu: Apdu | None = None
    reason: str = ""


class _State(Enum):
    IDLE = 0
    IDLE_DLE = 1
    BODY = 2
    BODY_DLE = 3
    CRC_LO = 4
    CRC_HI = 5


class FrameDecoder:
    """Incremental decoder for the serial byte stream; feed it any number of bytes at a time.

    Never raises on line noise: bytes outside frames that are neither ACK nor NAK are counted
    in :attr:`garbage` and skipped; broken frames come back as ``BAD_FRAME`` events.
    """

    def __init__(self) -> None:
        self._state = _State.IDLE
        self._body = bytearray()
        self._crc_lo = 0
        self.garbage = 0

    @property
    def in_frame(self) -> bool:
        """True while a frame has started but not ended (the T1 inter-byte timer runs)."""
        return self._state not in (_State.IDLE, _State.IDLE_DLE)

    def reset(self) -> None:
        self._state = _State.IDLE
        self._body.clear()

    def feed(self, data: bytes) -> list[FrameEvent]:
        events: list[FrameEvent] = []
        for b in data:
            ev = self._step(b)
            if ev is not None:
                events.append(ev)
        return events

    def _bad(self, reason: str) -> FrameEvent:
        self.reset()
        return FrameEvent(EventKind.BAD_FRAME, reason=reason)

    def _step(self, b: int) -> FrameEvent | None:
        st = self._state
        if st is _State.IDLE:
            if b == ACK_BYTE:
                return FrameEvent(EventKind.ACK)
            if b == NAK_BYTE:
                return FrameEvent(EventKind.NAK)
            if b == DLE:
                self._state = _State.IDLE_DLE
            else:
                self.garbage += 1
            return None
        if st is _State.IDLE_DLE:
            if b == STX:
                self._state = _State.BODY
                self._body.clear()
            else:
                self.garbage += 2
                self._state = _State.IDLE
            return None
        if st is _State.BODY:
            if b == DLE:
                self._state = _State.BODY_DLE
            else:
                self._body.append(b)
                if len(self._body) > MAX_FRAME_PAYLOAD:
                    return self._bad("frame too long")
            return None
        if st is _State.BODY_DLE:
            if b == DLE:
                self._body.append(DLE)
                self._state = _State.BODY
                return None
            if b == ETX:
                self._state = _State.CRC_LO
                return None
            if b == STX:
                # A new frame started inside this one: report this one as broken, keep going.
                ev = self._bad("frame interrupted by a new frame start")
                self._state = _State.BODY
                return ev
            return self._bad(f"invalid DLE sequence 10 {b:02X}")
        if st is _State.CRC_LO:
            self._crc_lo = b
            self._state = _State.CRC_HI
            return None
        # CRC_HI
        payload = bytes(self._body)
        received = self._crc_lo | (b << 8)
        self.reset()
        expected = crc16_kermit(payload + bytes((ETX,)))
        if received != expected:
            return FrameEvent(
                EventKind.BAD_FRAME, reason=f"CRC {received:04X} != expected {expected:04X}"
            )
        try:
            apdu = decode_apdu(payload)
        except ProtocolError as exc:
            return FrameEvent(EventKind.BAD_FRAME, reason=f"frame holds no valid APDU: {exc}")
        return FrameEvent(EventKind.FRAME, apdu=apdu)
