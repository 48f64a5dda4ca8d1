"""Pure scheduling rules: retry backoff, periodic periods, the clock type. No I/O."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: Where the queue gets "now" from. Injected so tests move time instead of waiting.
Clock = Callable[[], datetime]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    """The default :data:`Clock`: the aware current time in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon a failing job of a kind runs again.

    The delay before attempt ``n + 1`` is ``base_delay * factor ** (n - 1)``, capped at
    ``max_delay``, then shortened by a random fraction of up to ``jitter`` so that jobs failing
    together (a counterpart outage) do not come back together. After ``max_attempts`` attempts the
    job is dead-lettered.
    """

    max_attempts: int = 5
    base_delay: timedelta = timedelta(seconds=5)
    factor: float = 2.0
    max_delay: timedelta = timedelta(hours=1)
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.factor < 1:
            raise ValueError("factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if self.base_delay < timedelta(0) or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based); never above ``max_delay``."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        cap = self.max_delay.total_seconds()
        # Cap the exponent before multiplying: factor ** 1000 would overflow a float.
        raw = self.base_delay.total_seconds() * self.factor ** min(attempt - 1, 64)
        seconds = min(raw, cap)
        if self.jitter:
            seconds *= 1 - self.jitter * (rng or random).random()
        return timedelta(seconds=seconds)


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Periodic:
    """A job enqueued once per period by the scheduler loop.

    Periods are aligned on the Unix epoch plus ``offset`` (UTC): ``every=timedelta(days=1),
    offset=timedelta(hours=2)`` runs daily at 02:00 UTC; ``every=timedelta(minutes=5)`` runs at
    :00, :05, ... Each period's job has the dedupe key ``periodic:<kind>:<period start>``, so any
    number of schedulers enqueue it once. A period missed while no scheduler ran is skipped (no
    backfill): periodic handlers must look at the state of the world, not at the period.
    """

    kind: str
    every: timedelta
    offset: timedelta = timedelta(0)
    payload: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None
    queue: str = "default"

    def __post_init__(self) -> None:
        if self.every < timedelta(seconds=1):
            raise ValueError("a periodic job needs every >= 1 second")
        if not timedelta(0) <= self.offset < self.every:
            raise ValueError("need 0 <= offset < every")

    def period_start(self, now: datetime) -> datetime:
        """Start of the period containing ``now``."""
        elapsed = now - _EPOCH - self.offset
        return now - (elapsed % self.every)

    def next_start(self, now: datetime) -> datetime:
        """Start of the period after the one containing ``now``."""
        return self.period_start(now) + self.every

    def dedupe_key(self, start: datetime) -> str:
        return f"periodic:{self.kind}:{start.astimezone(UTC):%Y%m%dT%H%M%S.%fZ}"
