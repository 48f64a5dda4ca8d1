"""Shared Prometheus metrics: safe re-declaration, exposition, multiprocess mode."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from tillbridge.observability import metrics


def _sample(name: str, labels: dict[str, str]) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_declaring_twice_returns_the_registered_metric() -> None:
    c1 = metrics.counter("tillbridge_test_things", "Things.", ("kind",))
    c2 = metrics.counter("tillbridge_test_things", "Things.", ("kind",))
    assert c1 is c2
    assert metrics.counter("tillbridge_test_things_total", "Things.", ("kind",)) is c1
    h = metrics.histogram("tillbridge_test_seconds", "Time.")
    assert metrics.histogram("tillbridge_test_seconds", "Time.") is h
    g = metrics.gauge("tillbridge_test_running", "Running.")
    assert metrics.gauge("tillbridge_test_running", "Running.") is g
    assert isinstance(c1, Counter) and isinstance(h, Histogram) and isinstance(g, Gauge)


def test_declaring_with_another_kind_is_an_error() -> None:
    metrics.counter("tillbridge_test_kind_clash", "Clash.")
    with pytest.raises(ValueError, match="already registered as Counter"):
        metrics.gauge("tillbridge_test_kind_clash", "Clash.")


def test_reimporting_the_module_keeps_the_singletons() -> None:
    before = metrics.HTTP_REQUESTS
    reloaded = importlib.reload(metrics)
    assert reloaded.HTTP_REQUESTS is before


def test_http_and_job_helpers_feed_the_shared_metrics() -> None:
    labels = {"method": "POST", "route": "/v1/payments/{payment_id}/capture", "status": "201"}
    before = _sample("tillbridge_http_requests_total", labels)
    metrics.observe_http_request("post", labels["route"], 201, 0.042)
    assert _sample("tillbridge_http_requests_total", labels) == before + 1
    count = _sample(
        "tillbridge_http_request_duration_seconds_count",
        {"method": "POST", "route": labels["route"]},
    )
    assert count >= 1

    job = {"kind": "erp.post_payment", "result": "succeeded"}
    before = _sample("tillbridge_jobs_processed_total", job)
    metrics.observe_job(**job)
    assert _sample("tillbridge_jobs_processed_total", job) == before + 1


def test_render_metrics_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics.observe_job("render.test", "succeeded")
    body, content_type = metrics.render_metrics()
    assert content_type.startswith("text/plain")
    assert b'tillbridge_jobs_processed_total{kind="render.test",result="succeeded"}' in body
    body, content_type = metrics.render_metrics("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_mark_process_dead_without_multiprocess_is_a_no_op(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics.mark_process_dead(123456)


_CHILD = textwrap.dedent(
    """
    import sys
    from tillbridge.observability import metrics
    if sys.argv[1] == "work":
        metrics.observe_job("multi.test", "succeeded")
        metrics.observe_http_request("GET", "/health", 200, 0.001)
    else:
        body, ctype = metrics.render_metrics()
        sys.stdout.write(body.decode())
    """
)


def test_multiprocess_mode_merges_every_process(tmp_path: Path) -> None:
    # The variable must be set before prometheus-client is imported: a fresh interpreter each.
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", _CHILD, "work"], env=env, check=True, timeout=60)
    rendered = subprocess.run(
        [sys.executable, "-c", _CHILD, "render"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert 'tillbridge_jobs_processed_total{kind="multi.test",result="succeeded"} 2.0' in rendered
    assert (
        'tillbridge_http_requests_total{method="GET",route="/health",status="200"} 2.0' in rendered
    )
