"""The one retry-policy type: how many attempts a failing piece of work gets, and the waits.

Two places retry, on very different time scales, with this one type:

- the durable job queue (:mod:`tillbridge.queue`) reschedules a failed job in the database:
  seconds to an hour between attempts, a little jitter. Its defaults are the class defaults
  (``tillbridge.queue.DEFAULT_RETRY``);
- the outbound HTTP client (:mod:`tillbridge.outbound`) repeats a call that is safe to repeat
  within the call: fractions of a second to a few seconds, full jitter, a wall budget and a cap
  on the ``Retry-After`` it waits for (``tillbridge.outbound.HTTP_RETRY``; start from it with
  ``dataclasses.replace``, the class defaults are the queue's).

*Whether* something is retried is the caller's business (the queue retries every failed attempt,
the outbound client only safe calls with retryable answers); this type only says how often and
how soon. Nothing here does I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from tillbridge.errors import InvalidPolicy

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon failing work runs again.

    The wait after failed attempt ``n`` is ``base_delay * factor ** (n - 1)``, capped at
    ``max_delay``, then shortened by a random fraction of up to ``jitter`` so that work failing
    together (a counterpart outage) does not come back together; ``jitter=1`` is "full jitter",
    uniform between nothing and the capped delay. After ``max_attempts`` attempts (the first one
    included) there is no further attempt.

    **Parameters:**

    - ``max_attempts``: attempts in all, including the first (1 disables retries).
    - ``base_delay``, ``factor``, ``max_delay``, ``jitter``: the backoff above.
    - ``max_total``: a wall budget from the first attempt; no retry whose wait would end after
      it starts. ``None``: no budget. Honoured by in-process retry loops (the outbound client).
    - ``max_requested_delay``: the longest wait the counterpart may ask for (an HTTP
      ``Retry-After``) that is still waited for in-process; a longer request ends the retries so
      that a job can be rescheduled instead. ``None``: no cap. Honoured by the outbound client.

    Nonsense (no attempt at all, a shrinking factor, a jitter outside 0..1, negative or inverted
    delays) raises :class:`~tillbridge.errors.InvalidPolicy`, a ``ConfigError`` that is also a
    ``ValueError``.
    """

    max_attempts: int = 5
    base_delay: timedelta = timedelta(seconds=5)
    factor: float = 2.0
    max_delay: timedelta = timedelta(hours=1)
    jitter: float = 0.25
    max_total: timedelta | None = None
    max_requested_delay: timedelta | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidPolicy("max_attempts must be at least 1")
        if self.factor < 1:
            raise InvalidPolicy("factor must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise InvalidPolicy("jitter must be between 0 and 1")
        if self.base_delay < timedelta(0) or self.max_delay < self.base_delay:
            raise InvalidPolicy("need 0 <= base_delay <= max_delay")
        for name, value in (
            ("max_total", self.max_total),
            ("max_requested_delay", self.max_requested_delay),
        ):
            if value is not None and value < timedelta(0):
                raise InvalidPolicy(f"{name} must not be negative")

    def seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt ``attempt`` (1-based), in seconds; at most ``max_delay``.

        ``rng`` draws the jitter (the ``random`` module when omitted).
        """
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        cap = self.max_delay.total_seconds()
        # Cap the exponent before multiplying: factor ** 1000 would overflow a float.
        raw = self.base_delay.total_seconds() * self.factor ** min(attempt - 1, 64)
        seconds = min(raw, cap)
        if self.jitter:
            seconds *= 1 - self.jitter * (rng or random).random()
        return seconds

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """:meth:`seconds` as a ``timedelta``."""
        return timedelta(seconds=self.seconds(attempt, rng))
