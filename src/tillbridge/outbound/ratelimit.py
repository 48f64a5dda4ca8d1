"""Client-side pacing per provider account (leaky bucket, per process).

Providers rarely publish limits, but most answer bursts with 429. Pacing ourselves keeps a burst
of queued jobs from tripping that. A call that would have to wait longer than ``max_wait`` is
refused with :class:`~tillbridge.errors.RateLimited` (a ``NotSent``): nothing was sent,
so the job can be rescheduled safely.

Share one :class:`AccountRateLimit` between every client that talks to the same account. Limits
that must hold across several worker processes need a database-backed bucket instead.
"""

from __future__ import annotations

import asyncio

from aiolimiter import AsyncLimiter

from tillbridge.errors import ConfigError, RateLimited


class AccountRateLimit:
    """At most ``max_rate`` calls per ``period`` seconds for one account.

    ``max_wait`` bounds how long a call may queue for capacity; ``0`` means "refuse at once when
    there is no capacity".
    """

    def __init__(
        self, account: str, max_rate: float, period: float = 1.0, *, max_wait: float = 5.0
    ):
        if max_rate <= 0 or period <= 0:
            raise ConfigError("rate limit needs a positive rate and period")
        if max_wait < 0:
            raise ConfigError("max_wait must not be negative")
        self.account = account
        self.max_wait = max_wait
        self._limiter = AsyncLimiter(max_rate, period)

    async def acquire(self) -> None:
        """Take one unit of capacity or raise :class:`RateLimited`."""
        if self._limiter.has_capacity():
            await self._limiter.acquire()
            return
        if self.max_wait == 0:
            raise self._refusal()
        try:
            async with asyncio.timeout(self.max_wait):
                await self._limiter.acquire()
        except TimeoutError:
            raise self._refusal() from None

    def _refusal(self) -> RateLimited:
        return RateLimited(
            f"{self.account}: client-side rate limit reached; call not sent",
            account=self.account,
        )
