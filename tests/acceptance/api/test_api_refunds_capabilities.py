"""Refunds through the one engine, and capability refusals as clear 4xx before any attempt.

A connector's capabilities are checked before anything is stored: a refund on a sandbox without
refunds, or input to a terminal that takes none, is a 422 ``not_supported`` and leaves no row
behind (no payment change, no operation, no idempotency record).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.api import Api, client_for, count, make_keys
from tillbridge import testing
from tillbridge.api import create_app
from tillbridge.app.jobs import build_registry
from tillbridge.config import MerchantConfig
from tillbridge.connectors.gateways.fake import FakeConnector, FakeConnectorConfig
from tillbridge.connectors.terminals.sandbox import SandboxTerminalConfig
from tillbridge.queue import Worker
from tillbridge.store.tables import idempotency_keys, operations, refunds
from tillbridge.testing import assert_problem

pytestmark = pytest.mark.anyio

CONFIG = MerchantConfig(
    connectors={
        "fake": FakeConnectorConfig(),
        "norefund": FakeConnectorConfig(refunds=False),
    },
    terminals={"till": SandboxTerminalConfig()},
)


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    runtime = testing.make_runtime(db_url, CONFIG)
    app = create_app(runtime)
    tokens, ids = await make_keys(runtime.db)
    async with client_for(app) as client:
        yield Api(client=client, runtime=runtime, app=app, keys=tokens, key_ids=ids)
    await runtime.close()


async def run_jobs(api: Api) -> None:
    worker = Worker(api.runtime.db, build_registry(api.runtime), poll_interval=0.01)
    await worker.run_until_idle()


async def captured(api: Api, amount: int = 1000, connector: str = "fake", idem: str = "p") -> str:
    body = {"amount": amount, "currency": "EUR", "reference": "SO1", "connector": connector}
    r = await api.create(body, idem=idem)
    assert r.status_code == 201, r.text
    await run_jobs(api)
    payment = await api.client.get(f"/v1/payments/{r.json()['id']}", headers=api.headers())
    assert payment.json()["state"] == "captured"
    return str(r.json()["id"])


async def refund(api: Api, pid: str, idem: str, **body: Any) -> Any:
    return await api.client.post(
        f"/v1/payments/{pid}/refunds", json=body, headers=api.headers(idem=idem)
    )


async def test_partial_refunds_then_the_rest_end_refunded(api: Api) -> None:
    pid = await captured(api)
    first = await refund(api, pid, "r1", amount=300, reason="one item back")
    assert first.status_code == 201 and first.json()["status"] == "pending"
    assert first.json()["amount"] == 300 and first.json()["reason"] == "one item back"
    await run_jobs(api)
    p = (await api.client.get(f"/v1/payments/{pid}", headers=api.headers())).json()
    assert p["state"] == "partially_refunded" and p["refunded_amount"] == 300
    rest = await refund(api, pid, "r2")  # no amount: all that is left
    assert rest.status_code == 201 and rest.json()["amount"] == 700
    await run_jobs(api)
    p = (await api.client.get(f"/v1/payments/{pid}", headers=api.headers())).json()
    assert p["state"] == "refunded" and p["refunded_amount"] == 1000
    listed = await api.client.get(f"/v1/payments/{pid}/refunds", headers=api.headers())
    assert [r["status"] for r in listed.json()["data"]] == ["succeeded", "succeeded"]
    fake = api.runtime.connectors["fake"]
    assert isinstance(fake, FakeConnector) and all(n == 1 for n in fake.charges.values())


async def test_a_refund_over_what_is_left_is_refused_before_any_call(api: Api) -> None:
    pid = await captured(api)
    assert (await refund(api, pid, "r1", amount=600)).status_code == 201
    # 600 is reserved while in flight: 500 more would exceed the capture.
    assert_problem(await refund(api, pid, "r2", amount=500), 409, "refund_exceeds_capture")
    async with api.runtime.db.read() as conn:
        rows = (await conn.execute(refunds.select())).all()
    assert len(rows) == 1


async def test_a_refund_of_a_payment_not_captured_is_refused(api: Api) -> None:
    body = {"amount": 2051, "currency": "EUR", "reference": "SO2", "connector": "fake"}
    pid = (await api.create(body, idem="declined")).json()["id"]
    await run_jobs(api)
    assert_problem(await refund(api, pid, "r1"), 409, "illegal_transition")


async def test_a_sandbox_without_refunds_says_so_and_stores_nothing(api: Api) -> None:
    pid = await captured(api, connector="norefund")
    ops_before = await count(api.runtime.db, operations)
    keys_before = await count(api.runtime.db, idempotency_keys)
    problem = assert_problem(await refund(api, pid, "r1", amount=100), 422, "not_supported")
    assert "cannot refund" in problem["detail"]
    assert await count(api.runtime.db, operations) == ops_before
    assert await count(api.runtime.db, idempotency_keys) == keys_before
    assert await count(api.runtime.db, refunds) == 0


async def test_an_unknown_refund_is_recovered_by_asking_never_resent(api: Api) -> None:
    pid = await captured(api, amount=5000)
    r = await refund(api, pid, "r1", amount=1099)  # ..99: the answer is lost after it moved
    await run_jobs(api)
    listed = await api.client.get(f"/v1/payments/{pid}/refunds", headers=api.headers())
    assert listed.json()["data"][0]["status"] == "unknown"
    p = (await api.client.get(f"/v1/payments/{pid}", headers=api.headers())).json()
    assert p["state"] == "captured" and p["refunded_amount"] == 0
    # The follow-up status query, run now instead of in 2 s.
    engine = api.runtime.payments
    async with api.runtime.db.read() as conn:
        [op] = [
            o for o in (await conn.execute(operations.select())).mappings() if o["kind"] == "refund"
        ]
    await engine.recovery.job(pid, op["id"])
    p = (await api.client.get(f"/v1/payments/{pid}", headers=api.headers())).json()
    assert p["state"] == "partially_refunded" and p["refunded_amount"] == 1099
    fake = api.runtime.connectors["fake"]
    assert isinstance(fake, FakeConnector)
    assert fake.charges[op["echo_id"]] == 1  # the refund moved money once
    assert r.status_code == 201


async def test_refund_routes_validate_like_every_money_route(api: Api) -> None:
    pid = await captured(api)
    no_key = await api.client.post(f"/v1/payments/{pid}/refunds", json={}, headers=api.headers())
    assert_problem(no_key, 400, "idempotency_key_missing")
    text = await api.client.post(
        f"/v1/payments/{pid}/refunds",
        content=b"amount=1",
        headers={**api.headers(idem="t"), "Content-Type": "text/plain"},
    )
    assert_problem(text, 415, "unsupported_media_type")
    assert_problem(await refund(api, pid, "neg", amount=-5), 422, "validation_error")
    assert_problem(await refund(api, pid, "extra", amount=5, note="x"), 422, "validation_error")
    unknown = await refund(api, "pay_nope", "u1", amount=5)
    assert_problem(unknown, 404, "not_found")
    reader = await api.client.post(
        f"/v1/payments/{pid}/refunds", json={}, headers=api.headers("reader", idem="x")
    )
    assert_problem(reader, 403, "forbidden")
    again = await refund(api, pid, "same", amount=100)
    replay = await refund(api, pid, "same", amount=100)
    assert replay.json() == again.json() and replay.headers["Idempotent-Replayed"] == "true"
    assert_problem(await refund(api, pid, "same", amount=101), 422, "idempotency_key_reused")


async def test_input_to_a_terminal_that_takes_none_is_a_clear_422(api: Api) -> None:
    r = await api.client.post(
        "/v1/terminals/till/input", json={"action": "abort"}, headers=api.headers()
    )
    problem = assert_problem(r, 422, "not_supported")
    assert "takes no input" in problem["detail"]


async def test_a_terminal_payment_on_the_sandbox_terminal_runs_the_card_present_flow(
    api: Api,
) -> None:
    body = {"amount": 1234, "currency": "EUR", "reference": "BON-1"}
    r = await api.client.post(
        "/v1/terminals/till/payments", json=body, headers=api.headers(idem="t1")
    )
    assert r.status_code == 202, r.text
    await run_jobs(api)
    side = await api.client.get(f"/v1/payments/{r.json()['id']}/terminal", headers=api.headers())
    got = side.json()
    assert got["state"] == "captured" and got["terminal"]["masked_pan"] == "672559******0019"
    assert got["terminal"]["customer_receipt"]
    wrong = await api.client.post(
        "/v1/terminals/till/payments",
        json={**body, "currency": "USD"},
        headers=api.headers(idem="t2"),
    )
    assert_problem(wrong, 422, "wrong_currency")
