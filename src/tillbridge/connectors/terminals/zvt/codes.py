"""ZVT code tables: result codes, intermediate status codes, terminal status, card types.

Result codes (BMP 27, Abort 06 1E, negative answers ``84 xx``) follow spec chapter 10 as
summarised in the project reference (§2.10). ``01``..``63`` hex are the network operator's or
host's own codes (1..99 decimal): they carry no fixed text here.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import iso4217

from tillbridge.errors import MoneyError

APPROVED: Final = 0x00
ABORTED: Final = 0x6C
"""Abort via timeout or abort key (customer or cashier cancelled)."""
NOT_REGISTERED: Final = 0x6B
WRONG_CURRENCY: Final = 0x6F
FUNCTION_NOT_POSSIBLE: Final = 0x83
PROTOCOL_ERROR: Final = 0x9A
PLEASE_WAIT: Final = 0x9C
RECEIVER_NOT_READY: Final = 0xA0
ALREADY_REVERSED: Final = 0xB4
REVERSAL_NOT_POSSIBLE: Final = 0xB5
PRINTER_NOT_READY: Final = 0xCC
SYSTEM_ERROR: Final = 0xFF

RESULT_TEXTS: Final[dict[int, str]] = {
    0x00: "no error",
    0x64: "card not readable",
    0x65: "no card data",
    0x66: "processing error",
    0x67: "function not allowed for girocard/Maestro",
    0x68: "function not allowed for credit and fuel cards",
    0x6A: "turnover file full",
    0x6B: "function deactivated (terminal not registered)",
    0x6C: "aborted by timeout or abort key",
    0x6E: "card on the blocked list",
    0x6F: "wrong currency",
    0x71: "credit not sufficient (chip card)",
    0x72: "chip error",
    0x73: "card data incorrect",
    0x74: "DUKPT key exhausted",
    0x75: "text not authentic",
    0x76: "PAN not in whitelist",
    0x77: "end-of-day not possible",
    0x78: "card expired",
    0x79: "card not yet valid",
    0x7A: "card unknown",
    0x7B: "fallback to magnetic stripe not possible (girocard)",
    0x7C: "fallback to magnetic stripe not possible",
    0x7D: "communication error",
    0x7E: "fallback not possible, debit advice possible",
    0x83: "function not possible",
    0x85: "key missing",
    0x89: "PIN pad defective",
    0x9A: "ZVT protocol error",
    0x9B: "dial-up or communication fault",
    0x9C: "please wait",
    0xA0: "receiver not ready",
    0xA1: "remote station does not respond",
    0xA3: "no connection",
    0xA4: "Geldkarte submission not possible",
    0xA5: "not allowed by PCI-DSS / P2PE rules",
    0xB1: "memory full",
    0xB2: "merchant journal full",
    0xB4: "already reversed",
    0xB5: "reversal not possible",
    0xB7: "pre-authorisation incorrect or amount wrong",
    0xB8: "pre-authorisation error",
    0xBF: "supply voltage too low",
    0xC0: "card lock defective",
    0xC1: "merchant card locked",
    0xC2: "diagnosis required",
    0xC3: "maximum amount exceeded",
    0xC4: "card profile invalid",
    0xC5: "payment method not supported",
    0xC6: "currency not applicable",
    0xC8: "amount too small",
    0xC9: "maximum transaction amount too small",
    0xCB: "function only allowed in EUR",
    0xCC: "printer not ready",
    0xCD: "cashback not possible",
    0xD2: "function not allowed for service cards",
    0xDC: "card inserted",
    0xDD: "error during card eject",
    0xDE: "error during card insertion",
    0xE0: "remote maintenance active",
    0xE2: "card reader not answering",
    0xE3: "shutter closed",
    0xE4: "terminal activation required",
    0xE7: "a goods group was not found",
    0xE8: "no goods-group table loaded",
    0xE9: "restriction code not permitted",
    0xEA: "card code not permitted",
    0xEB: "PIN algorithm unknown",
    0xEC: "PIN processing not possible",
    0xED: "PIN pad defective",
    0xF0: "open end-of-day batch present",
    0xF1: "ec-cash/Maestro offline error",
    0xF5: "OPT error",
    0xF6: "OPT data missing",
    0xFA: "offline clearing error",
    0xFB: "turnover record defective",
    0xFC: "necessary device missing or defective",
    0xFD: "baud rate not supported",
    0xFE: "register unknown",
    0xFF: "system error",
}


def result_text(code: int) -> str:
    """A short English text for a result code; host codes name themselves as such."""
    if 0x01 <= code <= 0x63:
        return f"declined by host (code {code:02X})"
    return RESULT_TEXTS.get(code, f"unknown result code {code:02X}")


# Intermediate status (04 FF) codes 00..1D; 41..5D are the same plus "please remove card".
_INTERMEDIATE_BASE: Final[dict[int, str]] = {
    0x00: "waiting for amount confirmation",
    0x01: "please watch the PIN pad",
    0x02: "please watch the PIN pad",
    0x03: "not accepted",
    0x04: "waiting for the host",
    0x05: "sending auto-reversal",
    0x06: "sending post-bookings",
    0x07: "card not admitted",
    0x08: "card unknown",
    0x09: "card expired",
    0x0A: "insert card",
    0x0B: "please remove card",
    0x0C: "card not readable",
    0x0D: "processing error",
    0x0E: "please wait",
    0x0F: "starting automatic end-of-day",
    0x10: "invalid card",
    0x11: "balance display",
    0x12: "system malfunction",
    0x13: "payment not possible",
    0x14: "credit not sufficient",
    0x15: "incorrect PIN",
    0x16: "limit not sufficient",
    0x17: "please wait",
    0x18: "PIN try limit exceeded",
    0x19: "card data incorrect",
    0x1A: "service mode",
    0x1B: "approved, please fill up",
    0x1C: "approved, please take goods",
    0x1D: "declined",
}
_INTERMEDIATE_OTHER: Final[dict[int, str]] = {
    0xC7: "waiting for mileage input",
    0xC8: "waiting for the cashier",
    0xC9: "starting automatic diagnosis",
    0xCA: "starting automatic initialisation",
    0xCB: "merchant journal full",
    0xCC: "debit advice not possible, PIN required",
    0xD2: "dialling up",
    0xD3: "dial-up connection made",
    0xE0: "waiting for application selection",
    0xE1: "waiting for language selection",
    0xF1: "offline",
    0xF2: "online",
    0xF3: "offline transaction",
}
# Codes where someone must act at the terminal: reported as prompts rather than plain display.
PROMPT_STATUSES: Final = frozenset(
    {0x00, 0x01, 0x02, 0x0A, 0x0B, 0x41, 0x42, 0x4B, 0xC8, 0xE0, 0xE1}
)


def intermediate_text(code: int) -> str:
    if code in _INTERMEDIATE_BASE:
        return _INTERMEDIATE_BASE[code]
    if 0x41 <= code <= 0x5D:
        base = _INTERMEDIATE_BASE.get(code - 0x40)
        return (
            "please remove card" if base is None or code == 0x4B else f"{base}; please remove card"
        )
    return _INTERMEDIATE_OTHER.get(code, f"terminal status {code:02X}")


TERMINAL_STATUS_TEXTS: Final[dict[int, str]] = {
    0x00: "ready",
    0x51: "initialisation required",
    0x62: "date/time incorrect",
    0x9C: "please wait (e.g. software update)",
    0xDF: "out of order",
    0xE1: "card not completely removed",
}


def terminal_status_text(code: int) -> str:
    return TERMINAL_STATUS_TEXTS.get(code) or RESULT_TEXTS.get(code, f"status {code:02X}")


# ZVT card-type ids (BMP 8A); FF means "see TLV 41".
CARD_TYPES: Final[dict[int, str]] = {
    0x05: "girocard",
    0x06: "Mastercard",
    0x0A: "Visa",
    0x2E: "Maestro",
}


def card_type_name(code: int) -> str:
    return CARD_TYPES.get(code, f"card type {code:02X}")


# End-of-day totals (BMP 60) list these schemes in this order.
SETTLEMENT_SCHEMES: Final = ("girocard", "JCB", "Eurocard", "Amex", "Visa", "Diners", "others")


@cache
def _numeric_table() -> dict[int, str]:
    return {int(c.number): c.code for c in iso4217.Currency if c.number is not None}


def currency_number(alpha: str) -> int:
    """ISO 4217 numeric code of ``alpha`` (``"EUR"`` -> 978)."""
    member = getattr(iso4217.Currency, alpha.lower(), None)
    number = getattr(member, "number", None)
    if member is None or number is None:
        raise MoneyError(f"unknown currency {alpha!r}", code="unknown_currency")
    return int(number)


def currency_alpha(number: int) -> str:
    """ISO 4217 alpha code of ``number`` (978 -> ``"EUR"``)."""
    try:
        return _numeric_table()[number]
    except KeyError:
        raise MoneyError(f"unknown currency number {number}", code="unknown_currency") from None
