"""PT -> ECR messages: typed builders and parsers, shared by the client and the simulator.

Status-Information (04 0F) is the message that carries a transaction's result. Its parser keeps
only what the bridge may store: the PAN only masked (``*`` for hidden digits), and track data,
CVV and PIN data (BMPs 23, 24, 2D, 3A, D1) are dropped on the floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from tillbridge.connectors.terminals.zvt import apdu as A
from tillbridge.connectors.terminals.zvt import bmp as B
from tillbridge.connectors.terminals.zvt import tlv as T
from tillbridge.connectors.terminals.zvt.apdu import Apdu
from tillbridge.connectors.terminals.zvt.bmp import Charset
from tillbridge.errors import ProtocolError
from tillbridge.observability.cards import mask_pan

SCHEME_COUNT: Final = 7


@dataclass(frozen=True, slots=True)
class SchemeCount:
    count: int
    total: int


@dataclass(frozen=True, slots=True)
class Totals:
    """BMP 60 of End-of-Day: receipt range, then count and total per scheme (see
    :data:`~tillbridge.connectors.terminals.zvt.codes.SETTLEMENT_SCHEMES`)."""

    first_receipt: int
    last_receipt: int
    schemes: tuple[SchemeCount, ...]

    def encode(self) -> bytes:
        if len(self.schemes) != SCHEME_COUNT:
            raise ValueError(f"totals need {SCHEME_COUNT} schemes")
        out = B.bcd_encode(self.first_receipt, 2) + B.bcd_encode(self.last_receipt, 2)
        for s in self.schemes:
            out += bytes((s.count,)) + B.bcd_encode(s.total, 6)
        return out

    @classmethod
    def decode(cls, raw: bytes) -> Totals:
        if len(raw) < 4 + 7 * SCHEME_COUNT:
            raise ProtocolError(f"BMP 60 totals too short ({len(raw)} bytes)", code="zvt_bad_bmp")
        schemes = []
        for i in range(SCHEME_COUNT):
            chunk = raw[4 + 7 * i : 11 + 7 * i]
            schemes.append(SchemeCount(chunk[0], B.bcd_int(chunk[1:])))
        return cls(B.bcd_int(raw[0:2]), B.bcd_int(raw[2:4]), tuple(schemes))


@dataclass(frozen=True, slots=True)
class StatusInformation:
    """04 0F. Numbers from BCD fields stay zero-padded strings as printed on receipts."""

    result_code: int | None = None
    amount: int | None = None
    currency: int | None = None
    trace: str | None = None
    original_trace: str | None = None
    time: str | None = None
    date: str | None = None
    payment_type: int | None = None
    masked_pan: str | None = None
    terminal_id: str | None = None
    vu_number: str | None = None
    auth_code: str | None = None
    additional_text: str | None = None
    receipt_number: str | None = None
    turnover_number: str | None = None
    card_type: int | None = None
    card_name: str | None = None
    totals: Totals | None = None
    tlv: tuple[T.Tlv, ...] = ()

    @classmethod
    def from_apdu(cls, apdu: Apdu, charset: Charset = B.DEFAULT_CHARSET) -> StatusInformation:
        bmps = B.decode_bmps(apdu.data)

        def digits(bmp: int) -> str | None:
            raw = B.get(bmps, bmp)
            return B.bcd_digits(raw) if raw is not None else None

        def number(bmp: int) -> int | None:
            raw = B.get(bmps, bmp)
            return B.bcd_int(raw) if raw is not None else None

        def byte(bmp: int) -> int | None:
            raw = B.get(bmps, bmp)
            return raw[0] if raw is not None else None

        def text(bmp: int) -> str | None:
            raw = B.get(bmps, bmp)
            return B.decode_text(raw, charset).strip() if raw is not None else None

        pan_raw = B.get(bmps, 0x22)
        totals_raw = B.get(bmps, 0x60)
        return cls(
            result_code=byte(0x27),
            amount=number(0x04),
            currency=number(0x49),
            trace=digits(0x0B),
            original_trace=digits(0x37),
            time=digits(0x0C),
            date=digits(0xAA) or digits(0x0D),
            payment_type=byte(0x19),
            masked_pan=mask_pan(B.pan_digits(pan_raw)) if pan_raw is not None else None,
            terminal_id=digits(0x29),
            vu_number=text(0x2A),
            auth_code=text(0x3B),
            additional_text=text(0x3C),
            receipt_number=digits(0x87),
            turnover_number=digits(0x88),
            card_type=byte(0x8A),
            card_name=text(0x8B),
            totals=Totals.decode(totals_raw) if totals_raw is not None else None,
            tlv=tuple(B.tlv_items(bmps)),
        )

    def to_apdu(self, charset: Charset = B.DEFAULT_CHARSET) -> Apdu:
        items: list[tuple[int, bytes]] = []

        def add(bmp: int, value: bytes | None) -> None:
            if value is not None:
                items.append((bmp, value))

        def bcd(value: str | int | None, n: int) -> bytes | None:
            return None if value is None else B.bcd_encode(value, n)

        def one(value: int | None) -> bytes | None:
            return None if value is None else bytes((value,))

        def fixed_text(value: str | None, n: int) -> bytes | None:
            return None if value is None else B.encode_text(value, charset)[:n].ljust(n, b"\x00")

        add(0x27, one(self.result_code))
        add(0x04, bcd(self.amount, 6))
        add(0x0B, bcd(self.trace, 3))
        add(0x37, bcd(self.original_trace, 3))
        add(0x0C, bcd(self.time, 3))
        add(0xAA, bcd(self.date, 3))
        add(0x19, one(self.payment_type))
        add(0x22, None if self.masked_pan is None else B.pan_encode(self.masked_pan))
        add(0x29, bcd(self.terminal_id, 4))
        add(0x2A, fixed_text(self.vu_number, 15))
        add(0x3B, fixed_text(self.auth_code, 8))
        add(0x3C, None if self.additional_text is None else B.encode_text(self.additional_text))
        add(0x49, bcd(self.currency, 2))
        add(0x87, bcd(self.receipt_number, 2))
        add(0x88, bcd(self.turnover_number, 3))
        add(0x8A, one(self.card_type))
        add(0x8B, None if self.card_name is None else B.encode_text(self.card_name, charset))
        add(0x60, None if self.totals is None else self.totals.encode())
        if self.tlv:
            items.append((0x06, T.encode_tlv(self.tlv)))
        return Apdu(*A.STATUS_INFORMATION, B.encode_bmps(items))

    @property
    def receipt_sync(self) -> str | None:
        """TLV 1F1F: the PT's receipt number for receipt-number synchronisation."""
        item = T.find(list(self.tlv), T.RECEIPT_NUMBER_SYNC)
        return B.bcd_digits(item.value) if item is not None and item.value else None


def _display_lines(items: list[T.Tlv], charset: Charset) -> tuple[str, ...]:
    block = T.find(items, T.DISPLAY_TEXTS)
    if block is None:
        return ()
    return tuple(B.decode_text(t.value, charset) for t in T.find_all(block.children(), T.TEXT_LINE))


@dataclass(frozen=True, slots=True)
class IntermediateStatus:
    """04 FF: ``<status> [<timeout, BCD minutes>] [06 TLV with display texts (tag 24)]``."""

    status: int
    timeout_minutes: int | None = None
    display_lines: tuple[str, ...] = ()

    @classmethod
    def from_apdu(cls, apdu: Apdu, charset: Charset = B.DEFAULT_CHARSET) -> IntermediateStatus:
        d = apdu.data
        if not d:
            raise ProtocolError("intermediate status without status byte", code="zvt_bad_message")
        rest = d[1:]
        timeout: int | None = None
        items: list[T.Tlv] = []
        # The timeout byte is optional and may itself be 06 (six minutes): when the data goes on
        # with 06, try "TLV right away" first and fall back to "timeout byte, then TLV".
        parsed = False
        if rest[:1] == b"\x06":
            try:
                items = B.tlv_items(B.decode_bmps(rest))
                parsed = True
            except ProtocolError:
                parsed = False
        if rest and not parsed:
            timeout = B.bcd_int(rest[:1])
            items = B.tlv_items(B.decode_bmps(rest, 1)) if len(rest) > 1 else []
        if timeout == 0:
            timeout = None
        return cls(d[0], timeout, _display_lines(items, charset))

    def to_apdu(self, charset: Charset = B.DEFAULT_CHARSET) -> Apdu:
        data = bytes((self.status,))
        data += B.bcd_encode(self.timeout_minutes or 0, 1)
        if self.display_lines:
            lines = [T.Tlv(T.TEXT_LINE, B.encode_text(t, charset)) for t in self.display_lines]
            data += B.encode_bmp(0x06, T.encode_tlv([T.Tlv.of(T.DISPLAY_TEXTS, lines)]))
        return Apdu(*A.INTERMEDIATE_STATUS, data)


@dataclass(frozen=True, slots=True)
class PrintLine:
    """06 D1: ``<attribute> <text>``. Bit 8 set (but not ``80``) marks the last line of a
    receipt; ``FF`` means "feed n lines" with n in the next byte."""

    attribute: int
    text: str = ""

    @classmethod
    def from_apdu(cls, apdu: Apdu, charset: Charset = B.DEFAULT_CHARSET) -> PrintLine:
        if not apdu.data:
            raise ProtocolError("print line without attribute", code="zvt_bad_message")
        if apdu.data[0] == 0xFF:
            feeds = apdu.data[1] if len(apdu.data) > 1 else 1
            return cls(0xFF, "\n" * max(0, feeds - 1))
        return cls(apdu.data[0], B.decode_text(apdu.data[1:], charset))

    def to_apdu(self, charset: Charset = B.DEFAULT_CHARSET) -> Apdu:
        return Apdu(*A.PRINT_LINE, bytes((self.attribute,)) + B.encode_text(self.text, charset))

    @property
    def is_last(self) -> bool:
        return bool(self.attribute & 0x80) and self.attribute not in (0x80, 0xFF)

    def lines(self) -> list[str]:
        return self.text.split("\n") if self.attribute == 0xFF else [self.text]


RECEIPT_MERCHANT: Final = 0x01
RECEIPT_CUSTOMER: Final = 0x02
RECEIPT_ADMIN: Final = 0x03
LAST_LINE_ATTRIBUTE: Final = 0x81


@dataclass(frozen=True, slots=True)
class TextBlock:
    """06 D3: ``06 <TLV>`` with 1F07 (receipt type) and 25 (print texts: 07 lines, 09 attrs)."""

    receipt_type: int | None
    lines: tuple[str, ...]

    @classmethod
    def from_apdu(cls, apdu: Apdu, charset: Charset = B.DEFAULT_CHARSET) -> TextBlock:
        items = B.tlv_items(B.decode_bmps(apdu.data))
        rtype = T.find(items, T.RECEIPT_TYPE)
        texts = T.find(items, T.PRINT_TEXTS)
        lines: tuple[str, ...] = ()
        if texts is not None:
            lines = tuple(
                B.decode_text(t.value, charset) for t in texts.children() if t.tag == T.TEXT_LINE
            )
        return cls(rtype.value[0] if rtype is not None and rtype.value else None, lines)

    def to_apdu(self, charset: Charset = B.DEFAULT_CHARSET) -> Apdu:
        body: list[T.Tlv] = [T.Tlv(T.TEXT_LINE, B.encode_text(t, charset)) for t in self.lines]
        body.append(T.Tlv(T.ATTRIBUTE, bytes((LAST_LINE_ATTRIBUTE,))))
        items = []
        if self.receipt_type is not None:
            items.append(T.Tlv(T.RECEIPT_TYPE, bytes((self.receipt_type,))))
        items.append(T.Tlv.of(T.PRINT_TEXTS, body))
        return Apdu(*A.PRINT_TEXT_BLOCK, B.encode_bmp(0x06, T.encode_tlv(items)))


@dataclass(frozen=True, slots=True)
class Completion:
    """06 0F. After Status-Enquiry the data may start with an LLLVAR software version and a
    terminal-status byte. Parsing is lenient: a Completion must be acknowledged whatever it
    holds, so unreadable data only sets ``unparsed``."""

    result_code: int | None = None
    status_byte: int | None = None
    terminal_id: str | None = None
    currency: int | None = None
    sw_version: str | None = None
    terminal_status: int | None = None
    tlv: tuple[T.Tlv, ...] = ()
    unparsed: bool = field(default=False, compare=False)

    @classmethod
    def from_apdu(
        cls, apdu: Apdu, charset: Charset = B.DEFAULT_CHARSET, *, after_enquiry: bool = False
    ) -> Completion:
        d = apdu.data
        pos = 0
        sw: str | None = None
        tstatus: int | None = None
        if after_enquiry and d:
            if len(d) >= 3 and all(b & 0xF0 == 0xF0 and b & 0x0F <= 9 for b in d[:3]):
                n = int("".join(str(b & 0x0F) for b in d[:3]))
                sw = B.decode_text(d[3 : 3 + n], charset)
                pos = 3 + n
            if pos < len(d):
                tstatus = d[pos]
                pos += 1
        try:
            bmps = B.decode_bmps(d, pos)
            items = tuple(B.tlv_items(bmps))
        except ProtocolError:
            return cls(sw_version=sw, terminal_status=tstatus, unparsed=True)
        rc = B.get(bmps, 0x27)
        sb = B.get(bmps, 0x19)
        tid = B.get(bmps, 0x29)
        cc = B.get(bmps, 0x49)
        return cls(
            result_code=rc[0] if rc else None,
            status_byte=sb[0] if sb else None,
            terminal_id=B.bcd_digits(tid) if tid else None,
            currency=B.bcd_int(cc) if cc else None,
            sw_version=sw,
            terminal_status=tstatus,
            tlv=items,
        )

    def to_apdu(self, charset: Charset = B.DEFAULT_CHARSET) -> Apdu:
        data = b""
        if self.sw_version is not None:
            sw = B.encode_text(self.sw_version, charset)
            data += B.var_prefix(len(sw), 3) + sw
        if self.terminal_status is not None:
            data += bytes((self.terminal_status,))
        items: list[tuple[int, bytes]] = []
        if self.result_code is not None:
            items.append((0x27, bytes((self.result_code,))))
        if self.status_byte is not None:
            items.append((0x19, bytes((self.status_byte,))))
        if self.terminal_id is not None:
            items.append((0x29, B.bcd_encode(self.terminal_id, 4)))
        if self.currency is not None:
            items.append((0x49, B.bcd_encode(self.currency, 2)))
        if self.tlv:
            items.append((0x06, T.encode_tlv(self.tlv)))
        return Apdu(*A.COMPLETION, data + B.encode_bmps(items))


@dataclass(frozen=True, slots=True)
class AbortMessage:
    """06 1E: ``<result-code> [<CC> only with 6F] [06 TLV: 1F16 code, 1F17 text]``."""

    result_code: int
    extended_code: int | None = None
    extended_text: str | None = None

    @classmethod
    def from_apdu(cls, apdu: Apdu, charset: Charset = B.DEFAULT_CHARSET) -> AbortMessage:
        d = apdu.data
        if not d:
            # A bare 06 1E says "aborted" without a reason; 0xFF is the spec's "system error".
            return cls(0xFF)
        rest = d[1:]
        if d[0] == 0x6F and len(rest) >= 2 and rest[0] != 0x06:
            rest = rest[2:]
        try:
            items = B.tlv_items(B.decode_bmps(rest))
        except ProtocolError:
            items = []
        code = T.find(items, T.EXTENDED_ERROR_CODE)
        text = T.find(items, T.EXTENDED_ERROR_TEXT)
        return cls(
            d[0],
            int.from_bytes(code.value, "big") if code is not None and code.value else None,
            B.decode_text(text.value, charset) if text is not None else None,
        )

    def to_apdu(self, charset: Charset = B.DEFAULT_CHARSET) -> Apdu:
        items = []
        if self.extended_code is not None:
            items.append(T.Tlv(T.EXTENDED_ERROR_CODE, self.extended_code.to_bytes(2, "big")))
        if self.extended_text is not None:
            items.append(T.Tlv(T.EXTENDED_ERROR_TEXT, B.encode_text(self.extended_text, charset)))
        data = bytes((self.result_code,))
        if items:
            data += B.encode_bmp(0x06, T.encode_tlv(items))
        return Apdu(*A.ABORT, data)
