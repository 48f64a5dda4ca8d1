"""Call classes, the HTTP retry policy and the small pure functions behind them.

Nothing here does I/O. The client (:mod:`tillbridge.outbound.client`) asks these functions three
questions after every attempt: *may this call be repeated at all*, *is this answer worth another
try* (:data:`RETRY_STATUSES`, or the connector's "still processing" predicate), and *how long to
wait first* (:data:`HTTP_RETRY`, a :class:`tillbridge.retry.RetryPolicy`).

Why retries are so narrow: a money-moving request that timed out may have moved money. Only a
request the provider promises to deduplicate (it carries the provider's idempotency key, the
caller says so with ``idempotent=True``) or a read may be sent twice. Everything else surfaces its
outcome to the caller, who records it and recovers by asking, never by resending.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime
from typing import Final

import httpx2

from tillbridge.errors import ConfigError
from tillbridge.retry import RetryPolicy

#: Methods that never change anything on a well-behaved server, so repeating them is harmless.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

#: 5xx answers that say "try again later" rather than "this will never work".
#: 501 Not Implemented and 505 HTTP Version Not Supported are permanent, so they are excluded.
RETRYABLE_5XX: Final = frozenset({500, 502, 503, 504})

#: Answers worth another attempt of a call that is safe to repeat (the client's default).
RETRY_STATUSES: Final = RETRYABLE_5XX | {429}

ResponsePredicate = Callable[[httpx2.Response], bool]


@dataclass(frozen=True, slots=True)
class CallClass:
    """Timeouts for one kind of call, in seconds.

    ``read`` is the longest silence tolerated while waiting for the answer. Money-moving calls
    get a long read timeout on purpose: cutting them short does not stop the money, it only turns
    a known outcome into an unknown one.
    """

    name: str
    connect: float
    read: float
    write: float = 10.0
    pool: float = 5.0

    def __post_init__(self) -> None:
        for label, value in (
            ("connect", self.connect),
            ("read", self.read),
            ("write", self.write),
            ("pool", self.pool),
        ):
            if not value > 0:
                raise ConfigError(f"call class {self.name!r}: {label} timeout must be positive")

    def timeout(self) -> httpx2.Timeout:
        return httpx2.Timeout(
            connect=self.connect, read=self.read, write=self.write, pool=self.pool
        )


#: Defaults follow the only provider that publishes numbers (Afterpay: connect 10 s, read 20 s
#: for reads and 70 s for money-moving calls). Connectors may pass their own table.
DEFAULT_CALL_CLASSES: Final[dict[str, CallClass]] = {
    "read": CallClass("read", connect=10.0, read=20.0),
    "money": CallClass("money", connect=10.0, read=70.0, write=20.0),
}


def never(_response: httpx2.Response) -> bool:
    """The default "still processing" predicate: no answer means "still processing"."""
    return False


def still_processing_statuses(*statuses: int) -> ResponsePredicate:
    """A predicate for providers that answer "not done yet" with a status such as 409 or 423.

    Example: Afterpay answers 409 while a request with the same ``requestId`` is still running;
    the documented reaction is to retry with the same ``requestId``.
    """
    wanted = frozenset(statuses)

    def predicate(response: httpx2.Response) -> bool:
        return response.status_code in wanted

    return predicate


#: In-process retries of calls that are safe to repeat: short, seconds in all. Anything longer
#: belongs to the durable job queue, which reschedules the job instead of holding a request open.
#: Three attempts (the first included), full-jitter exponential backoff from 0.2 s capped at 5 s,
#: no retry that would end more than 30 s after the first attempt, and a ``Retry-After`` longer
#: than 30 s is not waited for (the answer goes back to the caller, who can reschedule the job).
#: Derive variants with ``dataclasses.replace(HTTP_RETRY, max_attempts=5)``: the bare
#: ``RetryPolicy()`` defaults are the job queue's, minutes to an hour.
HTTP_RETRY: Final = RetryPolicy(
    max_attempts=3,
    base_delay=timedelta(seconds=0.2),
    factor=2.0,
    max_delay=timedelta(seconds=5),
    jitter=1.0,
    max_total=timedelta(seconds=30),
    max_requested_delay=timedelta(seconds=30),
)

#: One attempt only: what the client uses for a call that is not safe to repeat.
NO_RETRY: Final = replace(HTTP_RETRY, max_attempts=1)


def is_safe_to_repeat(method: str, *, idempotent: bool) -> bool:
    """True if sending this request twice cannot do twice what it asks.

    A read is safe by definition. A write is safe only if the caller marks it ``idempotent``,
    meaning it carries the provider's idempotency key (or is idempotent by its nature, such as a
    PATCH that sets absolute values).
    """
    return method.upper() in SAFE_METHODS or idempotent


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds of backoff before the retry after ``attempt`` (1-based), from ``policy``.

    With :data:`HTTP_RETRY`'s full jitter (uniform between 0 and the capped exponential) the
    retries of many clients that failed together are spread, so they do not hit a recovering
    provider in lockstep.
    """
    return policy.seconds(attempt, rng)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or ``None`` if absent or unusable.

    Both forms of RFC 9110 are accepted: delta-seconds (``"120"``) and an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``), the latter relative to ``now`` (unix seconds). A date
    in the past means "now" (0). Garbage yields ``None`` so the caller falls back to backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        # Bound the digits: a 400-digit header must not turn into a huge int.
        return float(text) if len(text) <= 10 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # HTTP-dates are GMT by definition; a zone-less parse means the same.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def retry_after_of(response: httpx2.Response, *, now: float) -> float | None:
    """The ``Retry-After`` of ``response`` in seconds, if it has a usable one."""
    return parse_retry_after(response.headers.get("retry-after"), now=now)
