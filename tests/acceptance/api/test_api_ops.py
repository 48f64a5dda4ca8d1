"""Operational surface: health, readiness, metrics, problem+json for routing errors, request
ids, the last-resort 500, and the OpenAPI document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.api import Api, assert_problem, client_for
from tillbridge import testing
from tillbridge.api import create_app
from tillbridge.store.migrate import upgrade

pytestmark = pytest.mark.anyio


async def test_health_and_readiness_without_migrations(api: Api) -> None:
    """The test schema comes from metadata, not Alembic: alive, but not ready."""
    r = await api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await api.client.get("/readyz")
    problem = assert_problem(r, 503, "schema_out_of_date")
    assert "tillbridge db upgrade" in problem["detail"]
    assert int(r.headers["retry-after"]) >= 1


async def test_ready_once_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade(url)
    runtime = testing.make_runtime(url)
    async with client_for(create_app(runtime)) as client:
        r = await client.get("/readyz")
    await runtime.close()
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "schema": "current"}


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels_part, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels_part))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    before = (await api.client.get("/metrics")).text
    created = await api.create(idem="k-metrics")
    await api.client.get(f"/v1/payments/{created.json()['id']}", headers=api.headers())
    await api.client.get("/v1/payments/pay_missing", headers=api.headers())
    await api.client.get("/no/such/route")
    r = await api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text
    name = "tillbridge_http_requests_total"
    for labels, delta in [
        ({"method": "POST", "route": "/v1/payments", "status": "201"}, 1),
        ({"method": "GET", "route": "/v1/payments/{payment_id}", "status": "200"}, 1),
        ({"method": "GET", "route": "/v1/payments/{payment_id}", "status": "404"}, 1),
        ({"method": "GET", "route": "<unmatched>", "status": "404"}, 1),
    ]:
        assert sample(after, name, **labels) - sample(before, name, **labels) == delta, labels
    assert "pay_missing" not in after  # raw paths never become labels
    assert "tillbridge_http_request_duration_seconds_bucket" in after


async def test_unknown_route_and_wrong_method_are_problems(api: Api) -> None:
    assert_problem(await api.client.get("/v2/anything"), 404, "not_found")
    r = await api.client.delete("/v1/payments", headers=api.headers())
    assert_problem(r, 405, "method_not_allowed")
    assert "GET" in r.headers["allow"] and "POST" in r.headers["allow"]


async def test_request_id_is_echoed_or_generated(api: Api) -> None:
    r = await api.client.get("/healthz", headers={"X-Request-Id": "req-123.abc"})
    assert r.headers["x-request-id"] == "req-123.abc"
    r = await api.client.get("/healthz", headers={"X-Request-Id": "bad id\twith junk"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    r = await api.create(idem="k-rid", who="reader")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])  # errors carry one too


async def test_unexpected_exception_is_a_generic_500_problem(api: Api) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internals: postgres://user:pw@db")

    api.app.router.add_api_route("/test-only/explode", explode)
    r = await api.client.get("/test-only/explode")
    problem = assert_problem(r, 500, "internal_error")
    assert "secret" not in r.text and "postgres" not in problem["detail"]
    assert r.headers["x-request-id"]


async def test_openapi_documents_problems_on_payment_routes(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert {"Problem", "PaymentCreate", "PaymentOut", "PaymentList"} <= schemas.keys()
    assert "HTTPValidationError" not in schemas
    create = doc["paths"]["/v1/payments"]["post"]
    body_schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/PaymentCreate"}
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    for path, method in [
        ("/v1/payments", "post"),
        ("/v1/payments", "get"),
        ("/v1/payments/{payment_id}", "get"),
        ("/v1/payments/{payment_id}/cancel", "post"),
    ]:
        responses = doc["paths"][path][method]["responses"]
        errors = {s for s in responses if s[0] in "45"}
        assert {"401", "403", "422", "503"} <= errors, (path, method)
        for s in errors:
            assert list(responses[s]["content"]) == ["application/problem+json"], (path, s)
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def test_swagger_ui_is_served_locally_and_home_points_at_it(api: Api) -> None:
    """A newcomer finds /docs (issue 13.15): Swagger UI with assets from this process."""
    home = await api.client.get("/")
    assert home.status_code == 307 and home.headers["location"] == "/docs"
    page = await api.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.text and "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text and "https://" not in page.text.split("<body>")[0]
    js = await api.client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and "SwaggerUIBundle" in js.text[:5000]
    css = await api.client.get("/docs/assets/swagger-ui.css")
    assert css.status_code == 200
    assert_problem(await api.client.get("/docs/assets/nope.js"), 404)
