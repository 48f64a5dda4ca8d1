"""ECR -> PT commands: typed builders and parsers, shared by the client and the simulator.

Every command round-trips: ``decode_command(cmd.to_apdu()) == cmd``. Passwords are six digits
sent as 3 bytes BCD; currencies are ISO 4217 numeric codes (978 = EUR) sent as 2 bytes BCD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from tillbridge.connectors.terminals.zvt import apdu as A
from tillbridge.connectors.terminals.zvt import bmp as B
from tillbridge.connectors.terminals.zvt import tlv as T
from tillbridge.connectors.terminals.zvt.apdu import Apdu
from tillbridge.errors import ProtocolError

# Registration config-byte bits (reference §2.6).
CFG_ECR_PRINTS_PAYMENT: Final = 0x02
CFG_ECR_PRINTS_ADMIN: Final = 0x04
CFG_INTERMEDIATE_STATUS: Final = 0x08
CFG_ECR_CONTROLS_PAYMENT: Final = 0x10
CFG_ECR_CONTROLS_ADMIN: Final = 0x20
CFG_PT_SENDS_PRINT_COMMANDS: Final = 0x80
DEFAULT_CONFIG_BYTE: Final = 0xBE
"""All receipts printed by the ECR via print commands, intermediate status on, ECR controls."""

# Repeat Receipt service byte: bit 0 resend the last Status-Information, bit 1 no printout.
REPEAT_STATUS_INFO: Final = 0x01
REPEAT_NO_PRINTOUT: Final = 0x02


def _pwd(password: str) -> bytes:
    if len(password) != 6 or not password.isdigit():
        raise ValueError("the ZVT password is six digits")
    return B.bcd_encode(password, 3)


def _read_pwd(data: bytes, name: str) -> str:
    if len(data) < 3:
        raise ProtocolError(f"{name}: password missing", code="zvt_bad_command")
    return B.bcd_digits(data[:3])


def _tlv_bmp(items: tuple[T.Tlv, ...]) -> list[tuple[int, bytes]]:
    return [(0x06, T.encode_tlv(items))] if items else []


def _int(bmps: B.Bmps, bmp: int) -> int | None:
    raw = B.get(bmps, bmp)
    return B.bcd_int(raw) if raw is not None else None


def _byte(bmps: B.Bmps, bmp: int) -> int | None:
    raw = B.get(bmps, bmp)
    return raw[0] if raw is not None else None


def _tlvs(bmps: B.Bmps) -> tuple[T.Tlv, ...]:
    return tuple(B.tlv_items(bmps))


@dataclass(frozen=True, slots=True)
class Registration:
    """06 00: ``<pwd> <config-byte> [<CC> [03 <service-byte>] [06 <TLV>]]``."""

    password: str
    config_byte: int = DEFAULT_CONFIG_BYTE
    currency: int | None = None
    service_byte: int | None = None
    tlv: tuple[T.Tlv, ...] = ()

    def to_apdu(self) -> Apdu:
        data = _pwd(self.password) + bytes((self.config_byte,))
        if self.currency is not None:
            data += B.bcd_encode(self.currency, 2)
            extra = [] if self.service_byte is None else [(0x03, bytes((self.service_byte,)))]
            data += B.encode_bmps(extra + _tlv_bmp(self.tlv))
        elif self.service_byte is not None or self.tlv:
            raise ValueError("registration: service byte and TLV need a currency code")
        return Apdu(*A.REGISTRATION, data)

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> Registration:
        d = apdu.data
        if len(d) < 4:
            raise ProtocolError("registration: too short", code="zvt_bad_command")
        password = _read_pwd(d, "registration")
        currency = B.bcd_int(d[4:6]) if len(d) >= 6 else None
        bmps = B.decode_bmps(d, 6) if len(d) > 6 else []
        return cls(password, d[3], currency, _byte(bmps, 0x03), _tlvs(bmps))

    def permits_text_block(self) -> bool:
        """True if the TLV list of permitted commands (tag 26) contains 06 D3."""
        allowed = T.find(list(self.tlv), T.PERMITTED_COMMANDS)
        if allowed is None:
            return False
        return any(c.value == bytes(A.PRINT_TEXT_BLOCK) for c in allowed.children())


def permitted_commands(*controls: tuple[int, int]) -> T.Tlv:
    """TLV tag 26 listing commands the PT may send (e.g. 06 D3)."""
    return T.Tlv.of(T.PERMITTED_COMMANDS, [T.Tlv(T.PERMITTED_COMMAND, bytes(c)) for c in controls])


@dataclass(frozen=True, slots=True)
class Authorization:
    """06 01: ``04 <amount> [49 <CC>] [01 timeout] [02 max-status-infos] [06 TLV]``."""

    amount: int
    currency: int | None = None
    timeout: int | None = None
    max_status_infos: int | None = None
    tlv: tuple[T.Tlv, ...] = ()

    def to_apdu(self) -> Apdu:
        items = [B.amount_bmp(self.amount)]
        if self.currency is not None:
            items.append((0x49, B.bcd_encode(self.currency, 2)))
        if self.timeout is not None:
            items.append((0x01, bytes((self.timeout,))))
        if self.max_status_infos is not None:
            items.append((0x02, bytes((self.max_status_infos,))))
        return Apdu(*A.AUTHORIZATION, B.encode_bmps(items + _tlv_bmp(self.tlv)))

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> Authorization:
        bmps = B.decode_bmps(apdu.data)
        amount = _int(bmps, 0x04)
        if amount is None:
            raise ProtocolError("authorization without amount", code="zvt_bad_command")
        return cls(amount, _int(bmps, 0x49), _byte(bmps, 0x01), _byte(bmps, 0x02), _tlvs(bmps))


@dataclass(frozen=True, slots=True)
class Reversal:
    """06 30: ``<pwd> 87 <receipt-no> [04 <amount>] [49 <CC>] [06 TLV]``."""

    password: str
    receipt_number: int
    amount: int | None = None
    currency: int | None = None
    tlv: tuple[T.Tlv, ...] = ()

    def to_apdu(self) -> Apdu:
        items = [(0x87, B.bcd_encode(self.receipt_number, 2))]
        if self.amount is not None:
            items.append(B.amount_bmp(self.amount))
        if self.currency is not None:
            items.append((0x49, B.bcd_encode(self.currency, 2)))
        data = _pwd(self.password) + B.encode_bmps(items + _tlv_bmp(self.tlv))
        return Apdu(*A.REVERSAL, data)

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> Reversal:
        password = _read_pwd(apdu.data, "reversal")
        bmps = B.decode_bmps(apdu.data, 3)
        receipt = _int(bmps, 0x87)
        if receipt is None:
            raise ProtocolError("reversal without receipt number", code="zvt_bad_command")
        return cls(password, receipt, _int(bmps, 0x04), _int(bmps, 0x49), _tlvs(bmps))


@dataclass(frozen=True, slots=True)
class Refund:
    """06 31: ``<pwd> [04 <amount>] [49 <CC>] [06 TLV]``."""

    password: str
    amount: int
    currency: int | None = None
    tlv: tuple[T.Tlv, ...] = ()

    def to_apdu(self) -> Apdu:
        items = [B.amount_bmp(self.amount)]
        if self.currency is not None:
            items.append((0x49, B.bcd_encode(self.currency, 2)))
        data = _pwd(self.password) + B.encode_bmps(items + _tlv_bmp(self.tlv))
        return Apdu(*A.REFUND, data)

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> Refund:
        password = _read_pwd(apdu.data, "refund")
        bmps = B.decode_bmps(apdu.data, 3)
        amount = _int(bmps, 0x04)
        if amount is None:
            raise ProtocolError("refund without amount", code="zvt_bad_command")
        return cls(password, amount, _int(bmps, 0x49), _tlvs(bmps))


@dataclass(frozen=True, slots=True)
class EndOfDay:
    """06 50: ``<pwd> [06 TLV]``."""

    password: str
    tlv: tuple[T.Tlv, ...] = ()

    def to_apdu(self) -> Apdu:
        return Apdu(*A.END_OF_DAY, _pwd(self.password) + B.encode_bmps(_tlv_bmp(self.tlv)))

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> EndOfDay:
        password = _read_pwd(apdu.data, "end-of-day")
        return cls(password, _tlvs(B.decode_bmps(apdu.data, 3)))


@dataclass(frozen=True, slots=True)
class RepeatReceipt:
    """06 20: ``<pwd> [03 <service-byte>]``."""

    password: str
    service_byte: int | None = REPEAT_STATUS_INFO | REPEAT_NO_PRINTOUT

    def to_apdu(self) -> Apdu:
        extra = [] if self.service_byte is None else [(0x03, bytes((self.service_byte,)))]
        return Apdu(*A.REPEAT_RECEIPT, _pwd(self.password) + B.encode_bmps(extra))

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> RepeatReceipt:
        password = _read_pwd(apdu.data, "repeat receipt")
        return cls(password, _byte(B.decode_bmps(apdu.data, 3), 0x03))


@dataclass(frozen=True, slots=True)
class StatusEnquiry:
    """05 01: ``[<pwd> [03 <service-byte>]]``."""

    password: str | None = None
    service_byte: int | None = None

    def to_apdu(self) -> Apdu:
        if self.password is None:
            return Apdu(*A.STATUS_ENQUIRY)
        extra = [] if self.service_byte is None else [(0x03, bytes((self.service_byte,)))]
        return Apdu(*A.STATUS_ENQUIRY, _pwd(self.password) + B.encode_bmps(extra))

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> StatusEnquiry:
        if not apdu.data:
            return cls()
        password = _read_pwd(apdu.data, "status enquiry")
        return cls(password, _byte(B.decode_bmps(apdu.data, 3), 0x03))


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """06 70: ``[06 TLV]``."""

    tlv: tuple[T.Tlv, ...] = ()

    def to_apdu(self) -> Apdu:
        return Apdu(*A.DIAGNOSIS, B.encode_bmps(_tlv_bmp(self.tlv)))

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> Diagnosis:
        return cls(_tlvs(B.decode_bmps(apdu.data)))


@dataclass(frozen=True, slots=True)
class LogOff:
    """06 02: no data. Resets the PT's registration."""

    def to_apdu(self) -> Apdu:
        return Apdu(*A.LOG_OFF)

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> LogOff:
        return cls()


@dataclass(frozen=True, slots=True)
class AbortCommand:
    """06 B0: asks the PT to abort the running transaction."""

    def to_apdu(self) -> Apdu:
        return Apdu(*A.ABORT_COMMAND)

    @classmethod
    def from_apdu(cls, apdu: Apdu) -> AbortCommand:
        return cls()


Command = (
    Registration
    | Authorization
    | Reversal
    | Refund
    | EndOfDay
    | RepeatReceipt
    | StatusEnquiry
    | Diagnosis
    | LogOff
    | AbortCommand
)

_PARSERS: Final[dict[tuple[int, int], Callable[[Apdu], Command]]] = {
    A.REGISTRATION: Registration.from_apdu,
    A.AUTHORIZATION: Authorization.from_apdu,
    A.REVERSAL: Reversal.from_apdu,
    A.REFUND: Refund.from_apdu,
    A.END_OF_DAY: EndOfDay.from_apdu,
    A.REPEAT_RECEIPT: RepeatReceipt.from_apdu,
    A.STATUS_ENQUIRY: StatusEnquiry.from_apdu,
    A.DIAGNOSIS: Diagnosis.from_apdu,
    A.LOG_OFF: LogOff.from_apdu,
    A.ABORT_COMMAND: AbortCommand.from_apdu,
}


def decode_command(apdu: Apdu) -> Command:
    """Parse an ECR command. Unsupported control fields raise :class:`ProtocolError` with code
    ``zvt_unsupported_command`` (a PT answers those with ``84 83``)."""
    parser = _PARSERS.get(apdu.control)
    if parser is None:
        raise ProtocolError(f"unsupported command {apdu.name}", code="zvt_unsupported_command")
    return parser(apdu)


def receipt_sync_tlv(last_receipt: int | None) -> T.Tlv:
    """TLV 1F1F carrying the ECR's last known receipt number; empty when none is known (the
    spec forbids sending 0 for "unknown")."""
    if last_receipt is None:
        return T.Tlv(T.RECEIPT_NUMBER_SYNC, b"")
    return T.Tlv(T.RECEIPT_NUMBER_SYNC, B.bcd_encode(last_receipt, 2))


def receipt_sync_value(items: tuple[T.Tlv, ...]) -> tuple[bool, int | None]:
    """Read TLV 1F1F as ``(present, number)``; ``number`` is ``None`` when sent empty."""
    item = T.find(list(items), T.RECEIPT_NUMBER_SYNC)
    if item is None:
        return False, None
    return True, (B.bcd_int(item.value) if item.value else None)
