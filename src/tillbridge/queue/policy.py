"""Pure scheduling rules of the queue: the default retry policy and periodic periods. No I/O.

The retry-policy type is :class:`tillbridge.retry.RetryPolicy` (shared with the outbound HTTP
client); the clock is :mod:`tillbridge.clock`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from tillbridge.retry import RetryPolicy

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: A job kind registered without a policy: 5 attempts, 5 s doubling up to an hour, 25 % jitter.
DEFAULT_RETRY: Final = RetryPolicy()


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
