"""Prometheus metrics of the job queue, per kind.

Metrics are registered on the given :class:`~prometheus_client.CollectorRegistry` (default: the
process-wide one) the first time they are asked for. Asking again, from another worker or from a
second import of this module (a reload, tests), returns the collectors already registered instead
of failing with "Duplicated timeseries".
"""

from __future__ import annotations

from typing import Any, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

_C = TypeVar("_C", Counter, Histogram)


def _get_or_create(
    registry: CollectorRegistry, cls: type[_C], name: str, doc: str, **kw: Any
) -> _C:
    try:
        return cls(name, doc, labelnames=("kind",), registry=registry, **kw)
    except ValueError:
        # Already registered on this registry. prometheus_client has no public lookup by name;
        # its registry's name map is the documented-in-source way to find the collector.
        names: dict[str, Any] = registry._names_to_collectors
        existing = names.get(name) or names.get(f"{name}_total")
        if not isinstance(existing, cls):
            raise
        return existing


class QueueMetrics:
    """Counters ``tillbridge_jobs_{claimed,succeeded,failed,dead}_total{kind}`` and a duration
    histogram ``tillbridge_job_duration_seconds{kind}`` (handler time, any outcome)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else REGISTRY
        self.claimed = _get_or_create(
            reg, Counter, "tillbridge_jobs_claimed", "Jobs claimed by a worker."
        )
        self.succeeded = _get_or_create(
            reg, Counter, "tillbridge_jobs_succeeded", "Jobs completed successfully."
        )
        self.failed = _get_or_create(
            reg, Counter, "tillbridge_jobs_failed", "Failed attempts that will be retried."
        )
        self.dead = _get_or_create(
            reg, Counter, "tillbridge_jobs_dead", "Jobs moved to the dead letter state."
        )
        self.duration = _get_or_create(
            reg, Histogram, "tillbridge_job_duration_seconds", "Handler run time per attempt."
        )
