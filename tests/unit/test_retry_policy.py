"""One retry-policy type for the job queue and the outbound HTTP client, each with its defaults."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tillbridge.outbound as outbound
import tillbridge.queue as queue
from tillbridge.errors import ConfigError
from tillbridge.outbound.policy import HTTP_RETRY, NO_RETRY, RETRY_STATUSES, backoff_delay
from tillbridge.retry import RetryPolicy


def test_the_queue_and_the_outbound_client_share_one_type() -> None:
    assert queue.RetryPolicy is outbound.RetryPolicy is RetryPolicy
    assert isinstance(HTTP_RETRY, RetryPolicy) and isinstance(queue.DEFAULT_RETRY, RetryPolicy)


def test_the_queue_defaults_are_the_class_defaults() -> None:
    # 5 attempts, 5 s doubling up to an hour, shortened by up to 25 %: what jobs always had.
    assert queue.DEFAULT_RETRY == RetryPolicy(
        max_attempts=5,
        base_delay=timedelta(seconds=5),
        factor=2.0,
        max_delay=timedelta(hours=1),
        jitter=0.25,
    )
    assert queue.DEFAULT_RETRY.max_total is None
    assert queue.DEFAULT_RETRY.max_requested_delay is None


def test_the_http_defaults_are_what_the_outbound_client_always_had() -> None:
    assert HTTP_RETRY.max_attempts == 3
    assert HTTP_RETRY.base_delay == timedelta(seconds=0.2)
    assert HTTP_RETRY.max_delay == timedelta(seconds=5)
    assert HTTP_RETRY.factor == 2.0 and HTTP_RETRY.jitter == 1.0  # full jitter
    assert HTTP_RETRY.max_total == timedelta(seconds=30)
    assert HTTP_RETRY.max_requested_delay == timedelta(seconds=30)
    assert frozenset({500, 502, 503, 504, 429}) == RETRY_STATUSES  # 501 and 505 are permanent
    assert NO_RETRY.max_attempts == 1


@given(attempt=st.integers(1, 80), seed=st.integers(0, 2**32))
def test_full_jitter_is_uniform_up_to_the_capped_exponential(attempt: int, seed: int) -> None:
    delay = backoff_delay(attempt, HTTP_RETRY, random.Random(seed))
    assert 0.0 <= delay <= min(5.0, 0.2 * 2 ** (attempt - 1))
    assert HTTP_RETRY.delay(attempt, random.Random(seed)) <= timedelta(seconds=5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_total": timedelta(seconds=-1)},
        {"max_requested_delay": timedelta(seconds=-1)},
        {"base_delay": timedelta(seconds=-1)},
    ],
)
def test_negative_waits_are_refused_as_config_and_value_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempts_are_one_based() -> None:
    with pytest.raises(ValueError):
        HTTP_RETRY.seconds(0)
