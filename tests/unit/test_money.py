"""Money: exact conversion at the edges, never rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillbridge.errors import MoneyError
from tillbridge.money import MAX_MINOR, Money, exponent_of, is_currency


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("JPY", 0),  # yen has no minor unit
        ("EUR", 2),
        ("USD", 2),
        ("KWD", 3),  # dinar has fils: three decimals
        ("BHD", 3),
        ("CLF", 4),  # unidad de fomento
    ],
)
def test_exponents_follow_iso_4217(currency: str, exponent: int) -> None:
    assert exponent_of(currency) == exponent


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("25.90", "EUR", 2590),
        (25.9, "EUR", 2590),  # a float as a client sends it means its decimal literal
        (0.1, "EUR", 10),
        (19.99, "EUR", 1999),
        ("100", "JPY", 100),
        (100.0, "JPY", 100),
        ("1.234", "KWD", 1234),
        (Decimal("0.01"), "EUR", 1),
        (" 7.50 ", "EUR", 750),
        (3, "EUR", 300),
    ],
)
def test_of_is_exact(value: str | float | Decimal, currency: str, minor: int) -> None:
    assert Money.of(value, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        ("0.001", "EUR"),  # more digits than the currency has
        ("1.5", "JPY"),
        ("1.2345", "KWD"),
        (0.005, "EUR"),
        ("nan", "EUR"),
        ("inf", "EUR"),
        ("1e400", "EUR"),  # too large
        ("12,50", "EUR"),  # not a decimal
        ("", "EUR"),
        ("1" * 41, "EUR"),  # absurdly long input
    ],
)
def test_of_rejects_inexact_or_invalid(value: str | float, currency: str) -> None:
    with pytest.raises(MoneyError):
        Money.of(value, currency)


@pytest.mark.parametrize("currency", ["eur", "EURO", "XXX", "XAU", "ZZZ", "", "12A"])
def test_unknown_currencies_are_rejected(currency: str) -> None:
    assert not is_currency(currency)
    with pytest.raises(MoneyError):
        Money(1, currency)


def test_constructor_rejects_non_integers_and_overflow() -> None:
    with pytest.raises(MoneyError):
        Money(1.0, "EUR")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(True, "EUR")
    with pytest.raises(MoneyError):
        Money(MAX_MINOR + 1, "EUR")


def test_arithmetic_needs_the_same_currency() -> None:
    assert Money(100, "EUR") + Money(50, "EUR") == Money(150, "EUR")
    with pytest.raises(MoneyError):
        Money(100, "EUR") + Money(50, "USD")
    with pytest.raises(MoneyError):
        _ = Money(100, "EUR") < Money(50, "USD")


def test_provider_exponent_override_is_exact() -> None:
    # A provider that treats HUF as zero-decimal sends "1500" meaning 1500.00 HUF.
    assert Money.of("1500", "HUF", exponent=0) == Money(150000, "HUF")
    with pytest.raises(MoneyError):
        Money.of("15.001", "EUR", exponent=3)


currencies = st.sampled_from(["EUR", "USD", "JPY", "KWD", "CLF", "GBP", "CHF"])


@given(minor=st.integers(min_value=-MAX_MINOR, max_value=MAX_MINOR), currency=currencies)
def test_string_round_trip(minor: int, currency: str) -> None:
    m = Money(minor, currency)
    assert Money.of(m.to_str(), currency) == m
    assert Money.of(m.to_decimal(), currency) == m


@given(minor=st.integers(min_value=0, max_value=10**12), currency=currencies)
def test_float_round_trip_for_client_sized_amounts(minor: int, currency: str) -> None:
    # Clients send floats such as 25.9; for amounts a float can hold exactly in its shortest
    # repr (up to ~15 significant digits) conversion must be exact.
    m = Money(minor, currency)
    assert Money.of(float(m.to_str()), currency) == m


@given(
    minor=st.integers(min_value=0, max_value=10**9),
    extra=st.integers(min_value=1, max_value=9),
    currency=currencies,
)
def test_one_digit_too_many_is_always_an_error(minor: int, extra: int, currency: str) -> None:
    text = Money(minor, currency).to_str()
    text = text + str(extra) if "." in text else f"{text}.{extra}"
    with pytest.raises(MoneyError):
        Money.of(text, currency)
