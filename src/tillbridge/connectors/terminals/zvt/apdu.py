"""ZVT APDUs: ``CLASS INSTR | LEN | DATA``, and an incremental reader for byte streams.

The length is one byte (0..254) or ``FF`` followed by a 2-byte little-endian length (0..65535).
It never counts the control field or the length bytes themselves. Over TCP APDUs arrive as a
bare byte stream with arbitrary fragmentation; :class:`ApduReader` reassembles them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tillbridge.errors import ProtocolError

MAX_DATA: Final = 0xFFFF

# Control fields (CLASS, INSTR) used by this package.
ACK: Final = (0x80, 0x00)
REGISTRATION: Final = (0x06, 0x00)
AUTHORIZATION: Final = (0x06, 0x01)
LOG_OFF: Final = (0x06, 0x02)
COMPLETION: Final = (0x06, 0x0F)
ABORT: Final = (0x06, 0x1E)
REPEAT_RECEIPT: Final = (0x06, 0x20)
REVERSAL: Final = (0x06, 0x30)
REFUND: Final = (0x06, 0x31)
END_OF_DAY: Final = (0x06, 0x50)
DIAGNOSIS: Final = (0x06, 0x70)
ABORT_COMMAND: Final = (0x06, 0xB0)
PRINT_LINE: Final = (0x06, 0xD1)
PRINT_TEXT_BLOCK: Final = (0x06, 0xD3)
STATUS_ENQUIRY: Final = (0x05, 0x01)
SET_DATE_TIME_IN_ECR: Final = (0x04, 0x01)
STATUS_INFORMATION: Final = (0x04, 0x0F)
INTERMEDIATE_STATUS: Final = (0x04, 0xFF)

# Classes that occur in either direction. Anything else at an APDU boundary means the stream is
# not ZVT (or is out of sync), which is reported rather than guessed around.
KNOWN_CLASSES: Final = frozenset({0x04, 0x05, 0x06, 0x08, 0x0F, 0x80, 0x84})

NAMES: Final = {
    ACK: "Acknowledgement",
    REGISTRATION: "Registration",
    AUTHORIZATION: "Authorization",
    LOG_OFF: "Log-Off",
    COMPLETION: "Completion",
    ABORT: "Abort",
    REPEAT_RECEIPT: "Repeat Receipt",
    REVERSAL: "Reversal",
    REFUND: "Refund",
    END_OF_DAY: "End-of-Day",
    DIAGNOSIS: "Diagnosis",
    ABORT_COMMAND: "Abort (ECR)",
    PRINT_LINE: "Print Line",
    PRINT_TEXT_BLOCK: "Print Text-Block",
    STATUS_ENQUIRY: "Status-Enquiry",
    SET_DATE_TIME_IN_ECR: "Set Date/Time in ECR",
    STATUS_INFORMATION: "Status-Information",
    INTERMEDIATE_STATUS: "Intermediate Status-Information",
}


@dataclass(frozen=True, slots=True)
class Apdu:
    """One application message. ``cls``/``ins`` form the control field (for answers: CCRC/APRC)."""

    cls: int
    ins: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.cls <= 0xFF and 0 <= self.ins <= 0xFF):
            raise ValueError("control bytes must be 0..255")
        if len(self.data) > MAX_DATA:
            raise ValueError(f"APDU data too long ({len(self.data)} > {MAX_DATA} bytes)")

    @property
    def control(self) -> tuple[int, int]:
        return (self.cls, self.ins)

    @property
    def name(self) -> str:
        if self.cls == 0x84:
            return f"Negative answer {self.ins:02X}"
        return NAMES.get(self.control, f"APDU {self.cls:02X} {self.ins:02X}")

    def is_positive_answer(self) -> bool:
        """``80 00``, ``84 00`` and ``84 9C`` answer a command positively (spec, Portalum)."""
        return self.control == ACK or (self.cls == 0x84 and self.ins in (0x00, 0x9C))

    def is_negative_answer(self) -> bool:
        return self.cls == 0x84 and self.ins not in (0x00, 0x9C)

    def is_answer(self) -> bool:
        return self.cls in (0x80, 0x84)

    def encode(self) -> bytes:
        return bytes((self.cls, self.ins)) + encode_length(len(self.data)) + self.data

    def __repr__(self) -> str:
        # Data is summarised, not dumped: Status-Information may carry (masked) card data.
        return f"Apdu({self.cls:02X} {self.ins:02X}, {len(self.data)} bytes)"


def ack() -> Apdu:
    """The positive answer ``80 00 00``."""
    return Apdu(0x80, 0x00)


def nack(code: int) -> Apdu:
    """A negative answer ``84 <code> 00``."""
    return Apdu(0x84, code)


def encode_length(n: int) -> bytes:
    if n < 0 or n > MAX_DATA:
        raise ValueError(f"APDU data length {n} out of range")
    if n < 0xFF:
        return bytes((n,))
    return b"\xff" + n.to_bytes(2, "little")


def decode_apdu(raw: bytes) -> Apdu:
    """Decode exactly one APDU; raise :class:`ProtocolError` if ``raw`` is not exactly one."""
    reader = ApduReader()
    reader.feed(raw)
    apdu = reader.next()
    if apdu is None:
        raise ProtocolError("truncated APDU", code="zvt_truncated")
    if reader.pending():
        raise ProtocolError(f"{reader.pending()} bytes after the APDU", code="zvt_trailing_bytes")
    return apdu


def _stream_hint(first: int) -> str:
    if first == 0x10:
        return " (DLE: serial framing on a TCP link?)"
    if first in (0x06, 0x15):
        return " (a serial ACK/NAK byte: is the terminal set to serial transport?)"
    if 0x20 <= first < 0x7F:
        return " (printable text: another protocol on this port?)"
    return ""


class ApduReader:
    """Reassembles APDUs from a byte stream fed in pieces of any size.

    ``feed`` never parses; ``next`` returns the next complete APDU or ``None`` if more bytes are
    needed. A byte that cannot start an APDU raises :class:`ProtocolError`; after that the
    stream is out of sync and the reader stays failed (the link must be dropped).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._failed: ProtocolError | None = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pending(self) -> int:
        """Bytes received but not yet returned as an APDU."""
        return len(self._buf)

    def next(self) -> Apdu | None:
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        if len(buf) < 3:
            if buf and buf[0] not in KNOWN_CLASSES:
                self._fail(buf[0])
            return None
        if buf[0] not in KNOWN_CLASSES:
            self._fail(buf[0])
        if buf[2] == 0xFF:
            if len(buf) < 5:
                return None
            length = int.from_bytes(buf[3:5], "little")
            start = 5
        else:
            length = buf[2]
            start = 3
        end = start + length
        if len(buf) < end:
            return None
        apdu = Apdu(buf[0], buf[1], bytes(buf[start:end]))
        del buf[:end]
        return apdu

    def _fail(self, first: int) -> None:
        self._failed = ProtocolError(
            f"byte {first:02X} cannot start a ZVT APDU{_stream_hint(first)}",
            code="zvt_garbage",
        )
        raise self._failed
