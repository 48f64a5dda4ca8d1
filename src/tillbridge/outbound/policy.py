"""Call classes, retry policy and the small pure functions behind them.

Nothing here does I/O. The client (:mod:`tillbridge.outbound.client`) asks these functions three
questions after every attempt: *may this call be repeated at all*, *is this answer worth another
try*, and *how long to wait first*.

Why retries are so narrow: a money-moving request that timed out may have moved money. Only a
request the provider promises to deduplicate (it carries the provider's idempotency key, the
caller says so with ``idempotent=True``) or a read may be sent twice. Everything else surfaces its
outcome to the caller, who records it and recovers by asking, never by resending.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

import httpx2

from tillbridge.errors import ConfigError

#: Methods that never change anything on a well-behaved server, so repeating them is harmless.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

#: 5xx answers that say "try again later" rather than "this will never work".
#: 501 Not Implemented and 505 HTTP Version Not Supported are permanent, so they are excluded.
RETRYABLE_5XX: Final = frozenset({500, 502, 503, 504})

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


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds for in-process retries of calls that are safe to repeat.

    Retries here are short (seconds). Anything longer belongs to the durable job queue, which
    reschedules the job instead of holding a request open.

    - ``max_attempts``: total attempts including the first (1 disables retries).
    - ``base_delay`` / ``max_delay``: exponential backoff with full jitter, capped.
    - ``max_total``: wall budget in seconds from the first attempt; no retry starts after it.
    - ``max_retry_after``: a ``Retry-After`` longer than this is not waited for; the answer is
      returned to the caller, who can reschedule the job for later.
    """

    max_attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    max_total: float = 30.0
    max_retry_after: float = 30.0
    retry_statuses: frozenset[int] = field(default=RETRYABLE_5XX | {429})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_total < 0:
            raise ConfigError("retry delays must not be negative")


NO_RETRY: Final = RetryPolicy(max_attempts=1)


def is_safe_to_repeat(method: str, *, idempotent: bool) -> bool:
    """True if sending this request twice cannot do twice what it asks.

    A read is safe by definition. A write is safe only if the caller marks it ``idempotent``,
    meaning it carries the provider's idempotency key (or is idempotent by its nature, such as a
    PATCH that sets absolute values).
    """
    return method.upper() in SAFE_METHODS or idempotent


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full-jitter exponential backoff for the retry after ``attempt`` (1-based).

    Full jitter (uniform between 0 and the capped exponential) spreads the retries of many
    clients that failed together, so they do not hit a recovering provider in lockstep.
    """
    ceiling = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
    return rng.uniform(0.0, ceiling)


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
