"""Integer money: minor units plus an ISO 4217 currency.

Amounts never travel as floats inside the bridge. At the edges, a decimal string (``"25.90"``)
or a float as a client sends it (``25.9``) is converted exactly; a value that is not exact for
its currency (``"0.001"`` in EUR, ``"1.5"`` in JPY) raises :class:`~tillbridge.errors.MoneyError`,
never rounds.

Exponents come from the ISO 4217 table (JPY 0, EUR 2, KWD 3). Providers that deviate (some
treat ISK or HUF as zero-decimal) pass an explicit ``exponent`` override at their edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Final

import iso4217

from tillbridge.errors import MoneyError

#: Largest amount in minor units the bridge accepts (fits a signed 64-bit column with margin).
MAX_MINOR: Final = 10**15

# Funds codes, precious metals and testing codes are not payment currencies.
_NOT_PAYABLE: Final = frozenset(
    {"XAU", "XAG", "XPT", "XPD", "XTS", "XXX", "XBA", "XBB", "XBC", "XBD"}
)


@cache
def exponent_of(currency: str) -> int:
    """Return the ISO 4217 minor-unit exponent of ``currency`` (upper-case alpha code).

    Raises :class:`MoneyError` for unknown codes and for codes that have no minor unit defined
    (precious metals, testing codes).
    """
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise MoneyError(f"unknown currency {currency!r}", code="unknown_currency")
    code = currency.upper()
    if code != currency or code in _NOT_PAYABLE:
        raise MoneyError(f"unknown currency {currency!r}", code="unknown_currency")
    member = getattr(iso4217.Currency, code.lower(), None)
    exp = getattr(member, "exponent", None)
    if member is None or exp is None:
        raise MoneyError(f"unknown currency {currency!r}", code="unknown_currency")
    return int(exp)


def is_currency(currency: str) -> bool:
    """True if ``currency`` is a known payment currency code."""
    try:
        exponent_of(currency)
    except MoneyError:
        return False
    return True


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An exact amount: ``minor`` units of ``currency`` (``Money(1234, "EUR")`` is 12.34 EUR).

    Arithmetic is defined only between equal currencies; anything else raises.
    """

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise MoneyError("amount must be an integer number of minor units")
        if abs(self.minor) > MAX_MINOR:
            raise MoneyError("amount is too large", code="amount_too_large")
        exponent_of(self.currency)

    # construction -----------------------------------------------------------------------------

    @classmethod
    def of(
        cls, value: str | int | float | Decimal, currency: str, *, exponent: int | None = None
    ) -> Money:
        """Build from a major-unit value (``"25.90"``, ``25.9``, ``Decimal("25.90")``, ``25``).

        ``exponent`` overrides the ISO exponent for a provider that deviates. Raises
        :class:`MoneyError` when the value is not exact for the exponent, not finite, or too large.
        """
        exp = exponent_of(currency) if exponent is None else exponent
        dec = _to_decimal(value)
        scaled = dec.scaleb(exp)
        if scaled != scaled.to_integral_value():
            raise MoneyError(
                f"{value!r} is not exact for {currency} ({exp} decimal places)",
                code="amount_not_exact",
            )
        minor = int(scaled)
        if abs(minor) > MAX_MINOR:
            raise MoneyError("amount is too large", code="amount_too_large")
        if exponent is not None and exponent != exponent_of(currency):
            # Re-express in ISO minor units; an override with more digits than ISO must be exact.
            return cls.of(Decimal(minor).scaleb(-exp), currency)
        return cls(minor, currency)

    # presentation -----------------------------------------------------------------------------

    @property
    def exponent(self) -> int:
        return exponent_of(self.currency)

    def to_decimal(self) -> Decimal:
        """The amount in major units, exact: ``Money(1234, "EUR")`` gives ``Decimal("12.34")``."""
        return Decimal(self.minor).scaleb(-self.exponent)

    def to_str(self) -> str:
        """Major units as a plain string with exactly the currency's decimals: ``"12.34"``."""
        exp = self.exponent
        q = Decimal(1).scaleb(-exp)
        return str(self.to_decimal().quantize(q))

    def __str__(self) -> str:
        return f"{self.to_str()} {self.currency}"

    # arithmetic -------------------------------------------------------------------------------

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError("can only combine Money with Money")
        if other.currency != self.currency:
            raise MoneyError(f"currency mismatch: {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def is_positive(self) -> bool:
        return self.minor > 0

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)


def _to_decimal(value: str | int | float | Decimal) -> Decimal:
    if isinstance(value, bool):
        raise MoneyError("amount must be a number")
    if isinstance(value, float):
        # A float as a client sends it: 25.9 means the literal "25.9", i.e. its shortest repr,
        # not the binary expansion 25.89999999999999857891452847979962825775146484375.
        text = repr(value)
    elif isinstance(value, int | Decimal):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 40:
            raise MoneyError("amount is too long")
    else:
        raise MoneyError("amount must be a number or a decimal string")
    try:
        dec = Decimal(text)
    except (InvalidOperation, ValueError):
        raise MoneyError(f"{value!r} is not a decimal amount", code="amount_not_decimal") from None
    if not dec.is_finite():
        raise MoneyError("amount must be finite", code="amount_not_decimal")
    return dec
