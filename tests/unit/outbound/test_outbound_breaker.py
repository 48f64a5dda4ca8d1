"""Circuit breaker state machine, registry snapshot and gauge, with an injected clock."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from tillbridge.errors import CircuitOpen, ConfigError, NotSent
from tillbridge.outbound.breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
)
from tillbridge.testing import FakeClock


def at(clock: FakeClock, seconds: float) -> None:
    """Move ``clock`` to ``seconds`` after the start of the test."""
    clock.advance(seconds - (clock.monotonic() - START))


START = FakeClock().monotonic()


def state(breaker: CircuitBreaker) -> BreakerState:
    # A function call, so the type checker does not narrow the property between assertions.
    return breaker.state


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.acquire().failure()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(
        "acme",
        "payments",
        BreakerConfig(failure_threshold=3, open_seconds=30),
        clock=clock.monotonic,
    )


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED
    fail(breaker, 1)
    assert state(breaker) is BreakerState.OPEN


def test_success_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.acquire().success()
    fail(breaker, 2)
    assert state(breaker) is BreakerState.CLOSED


def test_open_breaker_fails_fast_as_not_sent(breaker: CircuitBreaker) -> None:
    fail(breaker, 3)
    with pytest.raises(CircuitOpen) as info:
        breaker.acquire()
    assert isinstance(info.value, NotSent)  # callers may treat it like any unsent call
    assert info.value.details == {"account": "acme", "group": "payments"}


def test_half_open_allows_exactly_one_probe(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    at(clock, 30.0)
    assert state(breaker) is BreakerState.HALF_OPEN
    probe = breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()  # second caller while the probe is in flight
    probe.success()
    assert state(breaker) is BreakerState.CLOSED
    breaker.acquire().success()


def test_failed_probe_reopens_with_a_fresh_wait(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    at(clock, 31.0)
    breaker.acquire().failure()
    assert state(breaker) is BreakerState.OPEN
    at(clock, 60.0)  # 29 s after the re-open: still waiting
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    at(clock, 61.0)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_released_probe_lets_the_next_call_probe(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    at(clock, 30.0)
    breaker.acquire().release()  # e.g. cancelled or refused by the rate limiter
    probe = breaker.acquire()
    probe.success()
    assert state(breaker) is BreakerState.CLOSED


def test_late_answers_from_before_the_opening_decide_nothing(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    early = breaker.acquire()  # permitted while closed
    fail(breaker, 3)
    early.success()  # arrives after the breaker opened
    assert state(breaker) is BreakerState.OPEN


def test_settling_twice_is_ignored(breaker: CircuitBreaker) -> None:
    permit = breaker.acquire()
    permit.failure()
    permit.failure()
    permit.release()
    assert breaker.snapshot().consecutive_failures == 1


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ConfigError):
        BreakerConfig(open_seconds=0)


def test_registry_keys_snapshot_and_gauge(clock: FakeClock) -> None:
    metrics = CollectorRegistry()
    registry = BreakerRegistry(
        BreakerConfig(failure_threshold=2, open_seconds=10),
        clock=clock.monotonic,
        registry=metrics,
        overrides={"refunds": BreakerConfig(failure_threshold=5, open_seconds=10)},
    )
    payments = registry.get("acme", "payments")
    assert registry.get("acme", "payments") is payments
    refunds = registry.get("acme", "refunds")
    fail(payments, 2)
    fail(refunds, 2)  # the override needs 5

    def gauge(group: str) -> float | None:
        return metrics.get_sample_value(
            "tillbridge_outbound_circuit_state", {"account": "acme", "group": group}
        )

    assert gauge("payments") == 1.0
    assert gauge("refunds") == 0.0
    at(clock, 4.0)
    snap = [s.as_dict() for s in registry.snapshot()]
    assert snap == [
        {
            "account": "acme",
            "group": "payments",
            "state": "open",
            "consecutive_failures": 2,
            "retry_in_seconds": 6.0,
        },
        {
            "account": "acme",
            "group": "refunds",
            "state": "closed",
            "consecutive_failures": 2,
            "retry_in_seconds": None,
        },
    ]
    at(clock, 10.0)
    registry.snapshot()
    assert gauge("payments") == 2.0  # half-open once the wait is over


def test_registries_are_isolated() -> None:
    # Two registries with their own CollectorRegistry never clash on the metric name.
    BreakerRegistry(registry=CollectorRegistry()).get("a", "g")
    BreakerRegistry(registry=CollectorRegistry()).get("a", "g")
    BreakerRegistry(registry=None).get("a", "g")
