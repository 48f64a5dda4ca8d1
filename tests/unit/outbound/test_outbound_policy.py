"""Pure policy functions: safety of repeating, backoff bounds, Retry-After parsing."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillbridge.errors import ConfigError
from tillbridge.outbound.policy import (
    HTTP_RETRY,
    CallClass,
    RetryPolicy,
    backoff_delay,
    is_safe_to_repeat,
    parse_retry_after,
    still_processing_statuses,
)

NOW = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT


@pytest.mark.parametrize(
    ("method", "idempotent", "safe"),
    [
        ("GET", False, True),  # reads are always safe
        ("head", False, True),  # method case does not matter
        ("OPTIONS", False, True),
        ("POST", False, False),  # a plain write may move money twice
        ("POST", True, True),  # a write with the provider's idempotency key
        ("PATCH", False, False),
        ("DELETE", True, True),
    ],
)
def test_is_safe_to_repeat(method: str, idempotent: bool, safe: bool) -> None:
    assert is_safe_to_repeat(method, idempotent=idempotent) is safe


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),  # delta-seconds
        (" 3 ", 3.0),  # surrounding whitespace tolerated
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),  # HTTP-date 30 s ahead of NOW
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # a date in the past means "now"
        ("", None),
        (None, None),
        ("soon", None),  # garbage falls back to backoff
        ("-5", None),  # negative delta is not a valid delta-seconds
        ("1" * 40, None),  # absurdly long number is refused, not turned into a huge int
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@given(attempt=st.integers(min_value=1, max_value=60), seed=st.integers(0, 2**32))
def test_backoff_is_full_jitter_and_capped(attempt: int, seed: int) -> None:
    policy = replace(HTTP_RETRY, base_delay=timedelta(seconds=0.5), max_delay=timedelta(seconds=4))
    delay = backoff_delay(attempt, policy, random.Random(seed))
    assert 0.0 <= delay <= min(4.0, 0.5 * 2 ** (attempt - 1))


def test_call_class_rejects_non_positive_timeouts() -> None:
    with pytest.raises(ConfigError):
        CallClass("money", connect=10, read=0)


def test_call_class_builds_separate_timeouts() -> None:
    timeout = CallClass("money", connect=3, read=70, write=5, pool=1).timeout()
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (3, 70, 5, 1)


def test_retry_policy_needs_one_attempt() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)


def test_still_processing_statuses() -> None:
    import httpx2

    predicate = still_processing_statuses(409, 423)
    assert predicate(httpx2.Response(409))
    assert predicate(httpx2.Response(423))
    assert not predicate(httpx2.Response(400))
