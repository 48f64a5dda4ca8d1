"""Card data in client fields is refused (issue 13.2, DESIGN 2.6): a 422 that says why, and
nothing stored: not in ``payments``, not in ``idempotency_keys``, not in outgoing webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.api import VALID_BODY, Api, assert_problem, client_for, make_keys
from tillbridge import testing
from tillbridge.api import create_app
from tillbridge.config import MerchantConfig
from tillbridge.connectors.gateways.fake import FakeConnectorConfig
from tillbridge.connectors.terminals.sandbox import SandboxTerminalConfig
from tillbridge.observability.cards import luhn_valid

pytestmark = pytest.mark.anyio

PAN = "4111111111111111"
assert luhn_valid(PAN)

CARRIERS: list[tuple[str, dict[str, Any], str]] = [
    ("reference", {"reference": PAN}, "reference"),
    ("reference with text", {"reference": f"SO42 card {PAN}"}, "reference"),
    ("reference spaced", {"reference": "4111 1111 1111 1111"}, "reference"),
    ("reference dashed", {"reference": "4111-1111-1111-1111"}, "reference"),
    ("reference track 2", {"reference": f";{PAN}=25121010000000000000?"}, "reference"),
    ("metadata value", {"metadata": {"note": PAN}}, "metadata"),
    ("metadata number", {"metadata": {"card": int(PAN)}}, "metadata"),
    ("metadata key", {"metadata": {PAN: "x"}}, "metadata"),
    ("metadata nested", {"metadata": {"a": {"b": ["x", f"pan {PAN}"]}}}, "metadata"),
    ("amex 15 digits", {"reference": "378282246310005"}, "reference"),
]


@pytest.mark.parametrize(("name", "change", "field"), CARRIERS, ids=[c[0] for c in CARRIERS])
async def test_a_pan_in_a_free_text_field_is_422_and_nothing_is_stored(
    api: Api, name: str, change: dict[str, Any], field: str
) -> None:
    r = await api.create({**VALID_BODY, **change}, idem=f"k-{name}")
    problem = assert_problem(r, 422, "validation_error")
    (err,) = problem["errors"]
    assert err["field"] == field and err["type"] == "card_data"
    assert "card number" in err["message"]
    assert PAN not in r.text and "4111 1111" not in r.text  # never echoed back
    assert await api.payments() == 0 and await api.idempotency_rows() == 0


async def test_numbers_that_are_not_card_numbers_pass(api: Api) -> None:
    fine = {
        "reference": "invoice:40009001",
        "metadata": {"ean": "4006381333931", "order": 1234567890123456, "phone": "+4930123456"},
    }
    assert not luhn_valid("1234567890123456")
    r = await api.create({**VALID_BODY, **fine}, idem="k-fine")
    assert r.status_code == 201, r.text


async def test_a_pan_in_a_refund_reason_is_422(api: Api) -> None:
    created = await api.create(idem="k-pay")
    pid = created.json()["id"]
    r = await api.client.post(
        f"/v1/payments/{pid}/refunds",
        json={"reason": f"card {PAN} charged twice"},
        headers=api.headers("writer", "k-refund"),
    )
    (err,) = assert_problem(r, 422, "validation_error")["errors"]
    assert err["field"] == "reason" and err["type"] == "card_data"


async def test_a_pan_in_the_idempotency_key_is_400(api: Api) -> None:
    r = await api.create(idem=f"order-{PAN}")
    problem = assert_problem(r, 400, "idempotency_key_invalid")
    assert "card number" in problem["detail"] and PAN not in r.text
    assert await api.payments() == 0 and await api.idempotency_rows() == 0


@pytest.fixture
async def lane_api(db_url: str) -> AsyncIterator[Api]:
    config = MerchantConfig(
        connectors={"fake": FakeConnectorConfig()},
        terminals={"lane1": SandboxTerminalConfig()},
    )
    runtime = testing.make_runtime(db_url, config)
    app = create_app(runtime)
    tokens, ids = await make_keys(runtime.db)
    async with client_for(app) as client:
        yield Api(client=client, runtime=runtime, app=app, keys=tokens, key_ids=ids)
    await runtime.close()


@pytest.mark.parametrize(
    "change",
    [{"reference": PAN}, {"metadata": {"pan": PAN}}],
    ids=["reference", "metadata"],
)
async def test_terminal_payments_refuse_card_data_too(
    lane_api: Api, change: dict[str, Any]
) -> None:
    body = {"amount": 1234, "currency": "EUR", "reference": "BON-1", **change}
    r = await lane_api.client.post(
        "/v1/terminals/lane1/payments", json=body, headers=lane_api.headers("writer", "t-1")
    )
    (err,) = assert_problem(r, 422, "validation_error")["errors"]
    assert err["type"] == "card_data"
    assert await lane_api.payments() == 0 and await lane_api.idempotency_rows() == 0


async def test_terminal_input_text_refuses_card_data(lane_api: Api) -> None:
    r = await lane_api.client.post(
        "/v1/terminals/lane1/input",
        json={"action": "text", "text": PAN},
        headers=lane_api.headers("writer"),
    )
    (err,) = assert_problem(r, 422, "validation_error")["errors"]
    assert err["field"] == "text" and err["type"] == "card_data"
