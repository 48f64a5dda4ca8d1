"""A small circuit breaker: closed, open, half-open with a single probe.

One breaker guards one (provider account, endpoint group). After ``failure_threshold``
consecutive failures it opens: calls fail fast with :class:`~tillbridge.errors.CircuitOpen` (a
``NotSent``, so callers know nothing left the process). After ``open_seconds`` the next call is let
through as the single probe (half-open); its success closes the breaker, its failure re-opens it.

What counts as a failure is decided by the caller (see :mod:`tillbridge.outbound.classify`):
transport errors, timeouts and 5xx only. Declines and other 4xx are the provider working.

Concurrency: state changes happen without awaiting, so one breaker is safe to share between tasks
of one event loop. It is not thread-safe and not shared between processes (each worker process
learns about an outage on its own, which costs at most ``failure_threshold`` calls each).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge

from tillbridge.errors import CircuitOpen, ConfigError

log = structlog.get_logger(__name__)

Clock = Callable[[], float]


class BreakerState(IntEnum):
    """Numeric values are the gauge values exported to Prometheus."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    open_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigError("failure_threshold must be at least 1")
        if self.open_seconds <= 0:
            raise ConfigError("open_seconds must be positive")


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A read-only view for ``GET /v1/providers/health``."""

    account: str
    group: str
    state: str
    consecutive_failures: int
    retry_in_seconds: float | None  # when open: time until a probe is allowed

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "group": self.group,
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "retry_in_seconds": self.retry_in_seconds,
        }


class Permit:
    """Permission for one call, to be settled exactly once with its verdict.

    Settling twice is ignored, so a ``finally: permit.release()`` after a verdict is harmless.
    """

    __slots__ = ("_breaker", "_probe", "_settled")

    def __init__(self, breaker: CircuitBreaker, probe: bool) -> None:
        self._breaker = breaker
        self._probe = probe
        self._settled = False

    def success(self) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._on_success(self._probe)

    def failure(self) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._on_failure(self._probe)

    def release(self) -> None:
        """Settle without a verdict (call never sent, cancelled, or our own error)."""
        if not self._settled:
            self._settled = True
            self._breaker._on_release(self._probe)


class CircuitBreaker:
    """Closed / open / half-open breaker for one (account, group); see module docstring."""

    def __init__(
        self,
        account: str,
        group: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        on_change: Callable[[CircuitBreaker], None] | None = None,
    ) -> None:
        self.account = account
        self.group = group
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose wait is over reports half-open."""
        if self._state is BreakerState.OPEN and self._wait_over():
            return BreakerState.HALF_OPEN
        return self._state

    def acquire(self) -> Permit:
        """Permit one call or raise :class:`CircuitOpen` without sending anything."""
        if self._state is BreakerState.OPEN:
            if not self._wait_over():
                raise self._refusal("circuit open")
            self._set(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN:
            if self._probe_in_flight:
                raise self._refusal("circuit half-open, probe in flight")
            self._probe_in_flight = True
            return Permit(self, probe=True)
        return Permit(self, probe=False)

    def snapshot(self) -> BreakerSnapshot:
        retry_in: float | None = None
        if self._state is BreakerState.OPEN:
            retry_in = max(0.0, self._opened_at + self.config.open_seconds - self._clock())
        return BreakerSnapshot(
            account=self.account,
            group=self.group,
            state=self.state.name.lower(),
            consecutive_failures=self._failures,
            retry_in_seconds=retry_in,
        )

    # transitions, called by Permit ---------------------------------------------------------------

    def _on_success(self, probe: bool) -> None:
        if probe:
            self._probe_in_flight = False
            self._failures = 0
            self._set(BreakerState.CLOSED)
        elif self._state is BreakerState.CLOSED:
            self._failures = 0
        # A late answer to a call permitted before the breaker opened decides nothing: only the
        # probe may close an open breaker.

    def _on_failure(self, probe: bool) -> None:
        if probe:
            self._probe_in_flight = False
            self._open()
        elif self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.config.failure_threshold:
                self._open()

    def _on_release(self, probe: bool) -> None:
        if probe:
            # The probe told us nothing; let the next call probe instead.
            self._probe_in_flight = False

    # helpers ------------------------------------------------------------------------------------

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._set(BreakerState.OPEN)

    def _wait_over(self) -> bool:
        return self._clock() - self._opened_at >= self.config.open_seconds

    def _set(self, state: BreakerState) -> None:
        if state is self._state:
            return
        previous, self._state = self._state, state
        log.warning(
            "outbound.circuit_state",
            account=self.account,
            group=self.group,
            previous=previous.name.lower(),
            state=state.name.lower(),
            consecutive_failures=self._failures,
        )
        if self._on_change is not None:
            self._on_change(self)

    def _refusal(self, reason: str) -> CircuitOpen:
        return CircuitOpen(
            f"{self.account}/{self.group}: {reason}; call not sent",
            account=self.account,
            group=self.group,
        )


class BreakerRegistry:
    """All breakers of one process, keyed by (account, group); no module-level state.

    ``registry`` receives the gauge ``tillbridge_outbound_circuit_state{account,group}``
    (0 closed, 1 open, 2 half-open). Pass a fresh ``CollectorRegistry`` in tests; pass ``None`` to
    skip metrics entirely.
    """

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        registry: CollectorRegistry | None = None,
        overrides: dict[str, BreakerConfig] | None = None,
    ) -> None:
        self._config = config or BreakerConfig()
        self._overrides = dict(overrides or {})  # per endpoint group
        self._clock = clock
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._gauge: Gauge | None = None
        if registry is not None:
            self._gauge = Gauge(
                "tillbridge_outbound_circuit_state",
                "Circuit breaker state per provider account and endpoint group "
                "(0 closed, 1 open, 2 half-open).",
                ["account", "group"],
                registry=registry,
            )

    def get(self, account: str, group: str) -> CircuitBreaker:
        """The breaker for (account, group), created closed on first use."""
        key = (account, group)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(
                account,
                group,
                self._overrides.get(group, self._config),
                clock=self._clock,
                on_change=self._export,
            )
            self._breakers[key] = breaker
            self._export(breaker)
        return breaker

    def snapshot(self) -> list[BreakerSnapshot]:
        """All breakers, sorted by (account, group), with the gauge refreshed."""
        out = []
        for key in sorted(self._breakers):
            breaker = self._breakers[key]
            self._export(breaker)
            out.append(breaker.snapshot())
        return out

    def _export(self, breaker: CircuitBreaker) -> None:
        if self._gauge is not None:
            self._gauge.labels(account=breaker.account, group=breaker.group).set(int(breaker.state))
