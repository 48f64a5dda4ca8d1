"""The Redactor on known inputs: what is masked, what is kept, and how."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import SecretStr

from tillbridge.observability.redaction import (
    MARKER,
    Redactor,
    is_sensitive_key,
    luhn_valid,
)
from tillbridge.settings import Settings

R = Redactor(["sk_live_0123456789abcdef", "whsec_topsecret", "abc"])


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("378282246310005", True),  # Amex test number, 15 digits
        ("6011111111111117", True),
        ("0", True),
        ("", False),
        ("79927398713", True),  # the textbook example
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111111111111111 ok", "card 411111******1111 ok"),
        ("4111 1111 1111 1111", "4111 11** **** 1111"),
        ("4111-1111-1111-1111.", "4111-11**-****-1111."),
        ("amex 378282246310005", "amex 378282*****0005"),
        ("19 digits 6011000000000000001", "19 digits 601100*********0001"),
        # a number just before the PAN does not hide it
        ("qty 5 4111 1111 1111 1111", "qty 5 4111 11** **** 1111"),
        ("1999 4111111111111111", "1999 411111******1111"),
        # inside JSON and URLs
        ('{"pan":"4111111111111111"}', '{"pan":"411111******1111"}'),
        ("https://x/pay?card=4111111111111111&a=1", "https://x/pay?card=411111******1111&a=1"),
        # not a PAN: fails Luhn, too short, too long, glued to more digits
        ("ref 4111111111111112", "ref 4111111111111112"),
        ("rrn 123456789012", "rrn 123456789012"),
        ("id 41111111111111111111111", "id 41111111111111111111111"),
        ("already 411111******1111", "already 411111******1111"),
    ],
)
def test_pans(text: str, expected: str) -> None:
    assert R.redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        ";4111111111111111=25121010000000000000?",
        "%B4111111111111111^DOE/JOHN^25121010000000000000?",
        "B4111111111111111^DOE/JOHN^2512101000",
        "4111111111111111D25121010000000000F",
    ],
)
def test_track_data_is_removed_whole(text: str) -> None:
    out = R.redact_text(f"swipe {text} done")
    assert out == f"swipe {MARKER} done"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.x.y", f"Authorization: {MARKER}"),
        ("authorization=Basic dXNlcjpwYXNz", f"authorization={MARKER}"),
        ("Cookie: sid=abc; theme=dark\nHost: x", f"Cookie: {MARKER}\nHost: x"),
        ('{"password": "hunter2", "user": "bob"}', f'{{"password": "{MARKER}", "user": "bob"}}'),
        ("{'x-api-key': 'k-123', 'n': 1}", f"{{'x-api-key': '{MARKER}', 'n': 1}}"),
        ('"{\\"cvv\\": \\"123\\"}"', f'"{{\\"cvv\\": \\"{MARKER}\\"}}"'),
        ("GET /x?api_key=zzz&page=2", f"GET /x?api_key={MARKER}&page=2"),
        ("--client-secret=shh other", f"--client-secret={MARKER} other"),
        ("Stripe-Signature: t=1,v1=ab", f"Stripe-Signature: {MARKER},v1=ab"),
        (
            "cardSecurityCode=123 pinBlock=ABCDEF0123456789",
            f"cardSecurityCode={MARKER} pinBlock={MARKER}",
        ),
        ("track2=4111111111111111=2512", f"track2={MARKER}"),
        ("sent with Bearer abc.def-ghi", f"sent with Bearer {MARKER}"),
        ("Basic dXNlcjpwYXNz", f"Basic {MARKER}"),
        ("postgresql://tb:pw0rd@db:5432/tb", f"postgresql://tb:{MARKER}@db:5432/tb"),
    ],
)
def test_sensitive_values_in_text(text: str, expected: str) -> None:
    assert R.redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Basic information about the payment",
        "missing Bearer token",
        "authorization_code=123456 token_type=Bearer signature_valid=true",
        "idempotency_key=op-42 payment_id=pay_1 status: captured",
        "amount 1250 EUR, trace 000123, rrn 123456789012",
        "2026-11-30T12:00:00.123456+00:00",
        "https://example.test:8443/v1/payments/pay_1?expand=operations",
        "",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert R.redact_text(text) is text


def test_configured_secrets_longest_first_and_short_ones_ignored() -> None:
    r = Redactor(["secret", "my-secret-value", "ab", "", "REDA"])
    assert r.redact_text("x my-secret-value y secret z") == f"x {MARKER} y {MARKER} z"
    # shorter than 4 characters, or part of the marker itself: ignored, not masking noise
    assert r.redact_text("ab REDA") == "ab REDA"


def test_secret_inside_other_text_and_json() -> None:
    out = R.redact_text('{"note":"key=whsec_topsecret;sk_live_0123456789abcdef!"}')
    assert "whsec_topsecret" not in out
    assert "sk_live_0123456789abcdef" not in out


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Set-Cookie", True),
        ("X-Api-Key", True),
        ("apiKey", True),
        ("client_secret", True),
        ("accessToken", True),
        ("refresh_token", True),
        ("x-webhook-signature", True),
        ("signature", True),
        ("cardSecurityCode", True),
        ("cvv2", True),
        ("CSC", True),
        ("track2", True),
        ("pinBlock", True),
        ("terminal_pin", True),
        ("db_password", True),
        ("headers.authorization", True),
        ("authorization_code", False),
        ("token_type", False),
        ("signature_valid", False),
        ("pan", False),
        ("idempotency_key", False),
        ("shipping", False),
        ("payment_id", False),
        ("", False),
    ],
)
def test_sensitive_keys(key: str, sensitive: bool) -> None:
    assert is_sensitive_key(key) is sensitive


def test_redact_structures() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    original = {
        "Authorization": "Bearer x",
        "nested": [{"cvc": 123, "pan": 4111111111111111, "amount": Decimal("12.50")}],
        "tuple": ("4111111111111111", 7),
        "set": {"whsec_topsecret"},
        "token": None,
        "password": "",
        "when": now,
        "ok": True,
        "ratio": 0.5,
        "rrn": 123456789012,
    }
    out = R.redact(original)
    assert out == {
        "Authorization": MARKER,
        "nested": [{"cvc": MARKER, "pan": "411111******1111", "amount": "12.50"}],
        "tuple": ("411111******1111", 7),
        "set": {MARKER},
        "token": None,
        "password": "",
        "when": str(now),
        "ok": True,
        "ratio": 0.5,
        "rrn": 123456789012,
    }
    # the input is not modified
    assert original["Authorization"] == "Bearer x"
    assert R.redact(out) == out


def test_redact_deep_or_cyclic_structures_does_not_explode() -> None:
    deep: list[object] = ["4111111111111111"]
    for _ in range(100):
        deep = [deep]
    assert "4111111111111111" not in repr(R.redact(deep))
    cyclic: list[object] = ["4111111111111111"]
    cyclic.append(cyclic)
    assert "4111111111111111" not in repr(R.redact(cyclic))


def test_from_settings_takes_redact_values_and_the_database_password() -> None:
    settings = Settings(
        redact_values=[SecretStr("from-settings-1234")],
        database_url="postgresql://tb:db-pass-5678@localhost/tb",
    )
    r = Redactor.from_settings(settings, extra=["extra-value-9"])
    text = "a from-settings-1234 b db-pass-5678 c extra-value-9"
    assert r.redact_text(text) == f"a {MARKER} b {MARKER} c {MARKER}"


def test_crafted_input_is_bounded() -> None:
    # Thousands of short digit groups: every 13-19 digit window is a candidate. Must stay fast
    # and must not leave a Luhn-valid window intact.
    text = " ".join(["0"] * 5000)
    out = R.redact_text(text)
    assert R.redact_text(out) == out
    assert "0 0 0 0 0 0 0 0 0 0 0 0 0" not in out
