"""The OpenAPI document states what the server does (issue 13.4), checked item by item.

(The whole document is also exercised by schemathesis in
``tests/acceptance/api/test_api_openapi_conformance.py``.)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tillbridge.api import create_app
from tillbridge.inbound.tables import INBOX_STATUSES
from tillbridge.webhooks_out.tables import DELIVERY_STATUSES


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    stand_in: Any = SimpleNamespace(db=None, settings=SimpleNamespace(max_body_bytes=65536))
    document: dict[str, Any] = create_app(stand_in).openapi()
    return document


def _param(op: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [p for p in op["parameters"] if p["name"] == name]
    return found


@pytest.mark.parametrize(
    "path",
    ["/v1/payments", "/v1/payments/{payment_id}/refunds", "/v1/terminals/{terminal_id}/payments"],
)
def test_idempotency_key_is_required_where_the_server_requires_it(
    doc: dict[str, Any], path: str
) -> None:
    key = _param(doc["paths"][path]["post"], "Idempotency-Key")
    assert key["required"] is True
    assert key["schema"]["minLength"] == 1 and key["schema"]["maxLength"] == 255


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1/terminals/{terminal_id}/payments", "TerminalPaymentCreate"),
        ("/v1/terminals/{terminal_id}/input", "TerminalInput"),
        ("/v1/payments", "PaymentCreate"),
    ],
)
def test_bodies_parsed_by_hand_are_declared(doc: dict[str, Any], path: str, model: str) -> None:
    body = doc["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    ref = body["content"]["application/json"]["schema"]["$ref"]
    assert ref == f"#/components/schemas/{model}" and model in doc["components"]["schemas"]


def test_every_authenticated_operation_documents_401_403_503(doc: dict[str, Any]) -> None:
    secured = [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if op.get("security")
    ]
    assert len(secured) > 15
    for path, method, op in secured:
        missing = {"401", "403", "503"} - set(op["responses"])
        assert not missing, f"{method.upper()} {path} does not document {missing}"
        assert "problem+json" in next(iter(op["responses"]["401"]["content"]))


def _enum(schema: dict[str, Any], doc: dict[str, Any]) -> set[str]:
    for alt in schema.get("anyOf", [schema]):
        if "$ref" in alt:
            alt = doc["components"]["schemas"][alt["$ref"].rsplit("/", 1)[1]]
        if "enum" in alt:
            return set(alt["enum"])
    raise AssertionError(f"no enum in {schema}")


def test_status_filters_are_enums(doc: dict[str, Any]) -> None:
    inbox = _param(doc["paths"]["/v1/webhooks/inbox"]["get"], "status")
    deliveries = _param(doc["paths"]["/v1/webhooks/deliveries"]["get"], "status")
    payments = _param(doc["paths"]["/v1/payments"]["get"], "state")
    assert _enum(inbox["schema"], doc) == set(INBOX_STATUSES)
    assert _enum(deliveries["schema"], doc) == set(DELIVERY_STATUSES)
    assert "captured" in _enum(payments["schema"], doc)


def test_ids_are_bounded_in_the_schema(doc: dict[str, Any]) -> None:
    for path in ("/v1/webhooks/inbox/{inbox_id}", "/v1/webhooks/deliveries/{delivery_id}"):
        (param,) = doc["paths"][path]["get"]["parameters"]
        assert param["schema"]["minimum"] == 1 and param["schema"]["maximum"] == 2**63 - 1
