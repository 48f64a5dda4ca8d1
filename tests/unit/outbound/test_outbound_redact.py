"""Header and URL redaction: secrets out, evidence in."""

from __future__ import annotations

import pytest

from tillbridge.outbound.redact import REDACTED, redact_headers, redact_url, truncate_body


def test_redacts_credentials_and_signatures_keeps_evidence() -> None:
    out = redact_headers(
        {
            "Authorization": "Bearer sk_live_123",
            "Cookie": "session=abc",
            "X-Api-Key": "k",
            "xentral-signature": "67b9db",
            "webhook-signature": "v1,abc",
            "X-Afterpay-Request-Signature": "sig",
            "Idempotency-Key": "op-42",
            "Content-Type": "application/json",
            "X-Request-Id": "req-1",
        }
    )
    for name in (
        "authorization",
        "cookie",
        "x-api-key",
        "xentral-signature",
        "webhook-signature",
        "x-afterpay-request-signature",
    ):
        assert out[name] == REDACTED, name
    assert out["idempotency-key"] == "op-42"
    assert out["content-type"] == "application/json"
    assert out["x-request-id"] == "req-1"
    assert "sk_live_123" not in repr(out)


def test_repeated_headers_are_joined_not_dropped() -> None:
    out = redact_headers([("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Via", "1"), ("Via", "2")])
    assert out == {"set-cookie": f"{REDACTED}, {REDACTED}", "via": "1, 2"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # user info is dropped entirely
        ("https://user:pw@api.test/v2/x", "https://api.test/v2/x"),
        # secret-looking query parameters are redacted, others kept
        (
            "https://api.test/v2/x?access_token=abc&page=2",
            "https://api.test/v2/x?access_token=%5Bredacted%5D&page=2",
        ),
        ("https://api.test:8443/p?signature=s", "https://api.test:8443/p?signature=%5Bredacted%5D"),
        ("http://[::1]:8080/p", "http://[::1]:8080/p"),  # IPv6 literal keeps its brackets
        ("/relative/path", "/relative/path"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_truncate_body() -> None:
    assert truncate_body(b"abcdef", 4) == ("abcd", True)
    assert truncate_body(b"abc", 4) == ("abc", False)
    assert truncate_body(b"\xff\xfe", 10)[1] is False  # undecodable bytes do not raise
