"""Pure parts of the queue: backoff, periodic periods, registry, error capture, public surface."""

from __future__ import annotations

import importlib
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tillbridge.queue as queue
from tillbridge.errors import NotFound, QueueError
from tillbridge.queue import JobContext, JobRegistry, Periodic, RetryPolicy, UnknownJobKind
from tillbridge.queue.worker import error_info


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (1, 10),  # base
        (2, 20),  # base * 2
        (3, 40),  # base * 4
        (7, 600),  # 640 capped at max_delay
        (10_000, 600),  # huge exponents do not overflow
    ],
)
def test_backoff_without_jitter_is_exponential_and_capped(attempt: int, expected: float) -> None:
    policy = RetryPolicy(
        base_delay=timedelta(seconds=10), max_delay=timedelta(minutes=10), jitter=0
    )
    assert policy.delay(attempt) == timedelta(seconds=expected)


@given(attempt=st.integers(1, 200), jitter=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_jittered_backoff_stays_between_the_jitter_floor_and_the_cap(
    attempt: int, jitter: float, seed: int
) -> None:
    policy = RetryPolicy(
        base_delay=timedelta(seconds=3), max_delay=timedelta(hours=1), jitter=jitter
    )
    plain = RetryPolicy(base_delay=timedelta(seconds=3), max_delay=timedelta(hours=1), jitter=0)
    d = policy.delay(attempt, random.Random(seed))
    top = plain.delay(attempt)
    assert top * (1 - jitter) - timedelta(microseconds=1) <= d <= top <= timedelta(hours=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"base_delay": timedelta(hours=2), "max_delay": timedelta(hours=1)},
    ],
)
def test_nonsense_retry_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_periods_align_on_the_epoch_plus_offset() -> None:
    daily = Periodic("audit.purge", every=timedelta(days=1), offset=timedelta(hours=2))
    at = datetime(2026, 3, 5, 1, 59, tzinfo=UTC)
    assert daily.period_start(at) == datetime(2026, 3, 4, 2, 0, tzinfo=UTC)
    assert daily.next_start(at) == datetime(2026, 3, 5, 2, 0, tzinfo=UTC)
    assert daily.period_start(datetime(2026, 3, 5, 2, 0, tzinfo=UTC)) == datetime(
        2026, 3, 5, 2, 0, tzinfo=UTC
    )
    assert daily.dedupe_key(daily.period_start(at)) == (
        "periodic:audit.purge:20260304T020000.000000Z"
    )


@given(
    every_s=st.integers(1, 7 * 86400),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_every_instant_belongs_to_exactly_one_period(every_s: int, at: datetime) -> None:
    p = Periodic("k", every=timedelta(seconds=every_s))
    start = p.period_start(at)
    assert start <= at < start + p.every
    assert p.period_start(start) == start
    assert p.period_start(start + p.every - timedelta(microseconds=1)) == start


def test_periodic_declarations_are_checked() -> None:
    with pytest.raises(ValueError):
        Periodic("k", every=timedelta(milliseconds=10))
    with pytest.raises(ValueError):
        Periodic("k", every=timedelta(hours=1), offset=timedelta(hours=1))
    reg = JobRegistry()
    reg.periodic("k", every=timedelta(minutes=1))
    with pytest.raises(ValueError, match="already declared"):
        reg.periodic("k", every=timedelta(minutes=2))


async def _noop(ctx: JobContext) -> None:
    return None


def test_registry_refuses_duplicates_and_names_unknown_kinds() -> None:
    reg = JobRegistry()
    reg.register("b.kind", _noop)
    reg.handler("a.kind", timeout=3)(_noop)
    assert reg.kinds == ["a.kind", "b.kind"] and "a.kind" in reg
    assert reg.get("a.kind").timeout == 3
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a.kind", _noop)
    with pytest.raises(ValueError):
        reg.register("", _noop)
    with pytest.raises(UnknownJobKind, match="'nope'") as info:
        reg.get("nope")
    assert isinstance(info.value, QueueError)
    assert issubclass(queue.JobNotFound, NotFound)


def test_error_info_keeps_type_message_and_a_short_traceback() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise KeyError("missing-field")
        deep(n - 1)

    try:
        deep(30)
    except KeyError as exc:
        info = error_info(exc, 2, datetime(2026, 1, 1, tzinfo=UTC))
    assert info["type"] == "KeyError" and info["message"] == "'missing-field'"
    assert info["attempt"] == 2 and info["at"] == "2026-01-01T00:00:00+00:00"
    assert "raise KeyError" in info["traceback"]
    assert info["traceback"].count("in deep") <= 8  # innermost frames only
    assert len(info["traceback"]) <= 4000


def test_metrics_survive_a_second_creation_and_a_module_reload() -> None:
    from tillbridge.queue import metrics

    first = metrics.QueueMetrics()
    second = metrics.QueueMetrics()
    assert first.claimed is second.claimed
    reloaded = importlib.reload(metrics)
    third = reloaded.QueueMetrics()
    assert third.claimed is first.claimed


def test_public_surface_is_sorted_and_complete() -> None:
    def style(name: str) -> tuple[int, str]:  # constants, classes, functions (ruff RUF022)
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert queue.__all__ == sorted(queue.__all__, key=style)
    assert all(hasattr(queue, name) for name in queue.__all__)
