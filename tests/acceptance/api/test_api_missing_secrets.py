"""A secret the bridge cannot read stops only the part that needs it (issue 13.13).

An operator with five lanes wants four of them to take cards while the fifth's password file is
being fixed: the bridge starts, the terminal without its password refuses payments and says why
(``GET /v1/terminals``, ``tillbridge connectors list``), a webhook account without a readable
key answers 503 so the sender retries, and ``tillbridge config check`` fails on each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.api import Api, assert_problem, client_for, make_keys
from tillbridge import testing
from tillbridge.api import create_app
from tillbridge.app.registry import default_registry
from tillbridge.money import Money
from tillbridge.simulators.xentral import card_payment_body, deliveries, envelope

pytestmark = pytest.mark.anyio

CONFIG = """
[stores.s]
name = "Shop"

[terminals.lane1]
type = "zvt"
host = "127.0.0.1"
password = { env = "TB_TEST_LANE1_PASSWORD" }

[terminals.lane2]
type = "fake"

[erp.xpos]
type = "xentral"
url = "https://xentral.example"
api_key = { env = "TB_TEST_XENTRAL_TOKEN" }
webhook_secrets = [{ file = "/nonexistent/xentral_key" }]
"""


@pytest.fixture
async def api(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    monkeypatch.delenv("TB_TEST_LANE1_PASSWORD", raising=False)
    monkeypatch.setenv("TB_TEST_XENTRAL_TOKEN", "token")
    path = tmp_path / "tillbridge.toml"
    path.write_text(CONFIG)
    config = default_registry().load_config(path, required=True)  # as serve loads it
    runtime = testing.make_runtime(db_url, config)
    app = create_app(runtime)
    tokens, ids = await make_keys(runtime.db)
    async with client_for(app) as client:
        yield Api(client=client, runtime=runtime, app=app, keys=tokens, key_ids=ids)
    await runtime.close()


async def test_the_bridge_starts_and_only_that_terminal_refuses_payments(api: Api) -> None:
    listed = (await api.client.get("/v1/terminals", headers=api.headers("reader"))).json()
    problems = {t["id"]: t["problem"] for t in listed["data"]}
    assert problems == {
        "lane1": "environment variable TB_TEST_LANE1_PASSWORD is not set",
        "lane2": None,
    }
    body = {"amount": 1234, "currency": "EUR", "reference": "BON-1"}
    r = await api.client.post(
        "/v1/terminals/lane1/payments", json=body, headers=api.headers("writer", "k-1")
    )
    problem = assert_problem(r, 422, "connector_misconfigured")
    assert "TB_TEST_LANE1_PASSWORD" in problem["detail"]
    assert await api.payments() == 0
    ok = await api.client.post(
        "/v1/terminals/lane2/payments", json=body, headers=api.headers("writer", "k-2")
    )
    assert ok.status_code == 202, ok.text


async def test_a_webhook_account_without_a_readable_key_answers_503(api: Api) -> None:
    (d,) = deliveries(
        envelope(card_payment_body(Money.of("1.00", "EUR"))), now=1_700_000_000, key="k" * 20
    )
    r = await api.client.post("/webhooks/xentral/xpos", content=d.body, headers=d.headers)
    problem = assert_problem(r, 503, "secret_unavailable")
    assert "xentral/xpos" in problem["detail"] and "xentral_key" not in problem["detail"]
    assert int(r.headers["retry-after"]) > 0


async def test_start_up_lists_what_cannot_be_read(api: Api) -> None:
    assert api.runtime.config.secret_problems() == [
        ("terminals.lane1.password", "environment variable TB_TEST_LANE1_PASSWORD is not set"),
        (
            "erp.xpos.webhook_secrets.0",
            "cannot read secret file /nonexistent/xentral_key: No such file or directory",
        ),
    ]
