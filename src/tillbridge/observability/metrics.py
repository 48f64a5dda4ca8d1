"""Prometheus metrics shared by the API, the worker and the scheduler.

The metric objects below are module-level singletons on the default registry. Other modules
(the queue, the outbound HTTP client...) declare their own with :func:`counter`,
:func:`histogram` and :func:`gauge`, which return the already registered collector when the same
name is declared twice (a module imported under two names, a test re-importing it) instead of
failing with prometheus-client's "Duplicated timeseries" error.

Several processes (``tillbridge serve`` with several workers, ``tillbridge worker``) need
*multiprocess mode*: set ``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable directory **before
the process starts** (prometheus-client chooses its storage when it is imported) and
:func:`render_metrics` aggregates every process's files. Without the variable it renders the
in-process default registry.

Label values must stay few: the route *template* (``/v1/payments/{payment_id}``), never the
raw path; the job kind, never a job id.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final, Literal, TypeVar

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder

__all__ = [
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "JOBS_PROCESSED",
    "counter",
    "gauge",
    "histogram",
    "mark_process_dead",
    "multiprocess_dir",
    "observe_http_request",
    "observe_job",
    "render_metrics",
]

#: Prefix of every metric name of the bridge.
NAMESPACE: Final = "tillbridge"

#: HTTP latency buckets (seconds): API answers are fast; provider calls may take tens of seconds.
HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_M = TypeVar("_M", Counter, Gauge, Histogram)

GaugeMode = Literal[
    "all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent"
]


def _existing(name: str, kind: type[_M]) -> _M | None:
    # prometheus-client keeps no public lookup by name; the registry's own map is the source
    # of truth for "already registered". A counter registers "x", "x_total" and "x_created".
    for candidate in (name, f"{name}_total"):
        found = REGISTRY._names_to_collectors.get(candidate)
        if found is not None:
            if not isinstance(found, kind):
                raise ValueError(
                    f"metric {name!r} already registered as {type(found).__name__}, "
                    f"not {kind.__name__}"
                )
            return found
    return None


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """The counter ``name`` on the default registry, created on first call (``_total`` is
    appended on exposition, so pass ``tillbridge_jobs_processed``, not ``..._total``)."""
    return _existing(name, Counter) or Counter(name, documentation, labelnames)


def histogram(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
) -> Histogram:
    """The histogram ``name`` on the default registry, created on first call."""
    return _existing(name, Histogram) or Histogram(name, documentation, labelnames, buckets=buckets)


def gauge(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    multiprocess_mode: GaugeMode = "livesum",
) -> Gauge:
    """The gauge ``name`` on the default registry, created on first call.

    ``multiprocess_mode`` says how values of several processes combine (``livesum``: sum over
    the processes alive, the right thing for "jobs running now").
    """
    return _existing(name, Gauge) or Gauge(
        name, documentation, labelnames, multiprocess_mode=multiprocess_mode
    )


#: Requests answered by the API, by method, route template and status code.
HTTP_REQUESTS: Final = counter(
    f"{NAMESPACE}_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ("method", "route", "status"),
)
#: Time to answer an API request (seconds), by method and route template.
HTTP_REQUEST_DURATION: Final = histogram(
    f"{NAMESPACE}_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ("method", "route"),
    buckets=HTTP_BUCKETS,
)
#: Jobs the worker finished, by kind and result (``succeeded``, ``retried``, ``dead``...).
JOBS_PROCESSED: Final = counter(
    f"{NAMESPACE}_jobs_processed",
    "Jobs processed by the worker, by job kind and result.",
    ("kind", "result"),
)


def observe_http_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration (``route`` is the template)."""
    HTTP_REQUESTS.labels(method=method.upper(), route=route, status=str(status)).inc()
    HTTP_REQUEST_DURATION.labels(method=method.upper(), route=route).observe(max(seconds, 0.0))


def observe_job(kind: str, result: str) -> None:
    """Count one finished job."""
    JOBS_PROCESSED.labels(kind=kind, result=result).inc()


def multiprocess_dir() -> str | None:
    """The multiprocess directory if ``PROMETHEUS_MULTIPROC_DIR`` is set, else ``None``."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render_metrics(accept: str | None = None) -> tuple[bytes, str]:
    """The exposition for ``GET /metrics``: ``(body, content_type)``.

    ``accept`` is the request's ``Accept`` header; Prometheus servers that ask for OpenMetrics
    get it, everything else gets the classic text format. In multiprocess mode the samples of
    every process (alive or dead, as the metric kinds require) are merged from the directory;
    a fresh registry is built per call because the collector reads the files when collecting.
    """
    encoder, content_type = choose_encoder(accept or "")
    path = multiprocess_dir()
    if path is None:
        return encoder(REGISTRY), content_type
    registry = CollectorRegistry()
    # prometheus-client ships these two without annotations.
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return encoder(registry), content_type


def mark_process_dead(pid: int) -> None:
    """Tell multiprocess mode that worker process ``pid`` exited (drops its live gauges).

    Call it from the process manager when a child exits; without multiprocess mode it does
    nothing.
    """
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
