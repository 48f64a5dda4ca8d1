"""Payment results written back to Xentral (the v3 simulator), with faults: 5xx, 429, 404, and
a provider that is down long enough for the breaker to open and recover through half-open."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from support.webhooks import ACCOUNT, XENTRAL_TOKEN, Bridge
from tillbridge.audit.tables import audit_log
from tillbridge.erp.xentral.sync import WRITEBACK_JOB
from tillbridge.money import Money
from tillbridge.queue import retry_job
from tillbridge.queue.tables import jobs
from tillbridge.simulators.xentral import card_payment_body, envelope

pytestmark = pytest.mark.anyio
BREAKER = f"xentral:{ACCOUNT}"


async def writeback_jobs(b: Bridge) -> list[Any]:
    async with b.db.read() as conn:
        rows = await conn.execute(select(jobs).where(jobs.c.kind == WRITEBACK_JOB))
        return [r._mapping for r in rows]


async def breaker_state(b: Bridge) -> str:
    r = await b.client.get("/v1/providers/health", headers=b.reader())
    assert r.status_code == 200, r.text
    found = [x for x in r.json()["breakers"] if x["account"] == BREAKER]
    return str(found[0]["state"]) if found else "closed"


async def test_a_captured_xentral_payment_marks_the_invoice_paid(bridge: Bridge) -> None:
    bridge.xentral.add_invoice("40001234")
    bridge.xentral.add_sales_order("169")
    body = envelope(card_payment_body(Money.of("25.90", "EUR"), document_number="40001234"))
    body["body"]["salesOrderId"] = 169  # optional: approve the order's payment too
    await bridge.post(bridge.signed(body)[0])
    await bridge.work()
    invoice = bridge.xentral.invoices["40001234"]
    assert invoice["paymentStatus"] == "paid" and invoice["dunningSetManually"] is True
    assert invoice["dunningManualSettings"]["actualAmount"] == {
        "amount": "25.90",
        "currency": "EUR",
    }
    assert bridge.xentral.sales_orders["169"]["manualPaymentApproval"] is True
    assert all(r.authorized for r in bridge.xentral.received)
    (job,) = await writeback_jobs(bridge)
    assert job["status"] == "succeeded"
    async with bridge.db.read() as conn:
        entries = [r._mapping for r in await conn.execute(select(audit_log))]
    exchanges = [e for e in entries if e["action"] == "http.outbound"]
    assert [e["payload"]["status"] for e in exchanges] == [200, 200]
    assert exchanges[0]["subject_id"] == BREAKER
    assert XENTRAL_TOKEN not in json.dumps([e["payload"] for e in entries])
    assert exchanges[0]["payload"]["request_headers"]["authorization"].lower() == "[redacted]"
    assert any(e["action"] == "xentral.written_back" for e in entries)


async def test_declined_payments_write_nothing_back(bridge: Bridge) -> None:
    await bridge.send_sale("12.51")
    await bridge.work()
    assert await writeback_jobs(bridge) == []
    assert bridge.xentral.received == []


async def test_provider_down_opens_the_breaker_fails_fast_then_recovers(bridge: Bridge) -> None:
    sim = bridge.xentral
    sim.add_invoice("40001234")
    sim.fail_next(503, times=100)
    await bridge.send_sale(document_number="40001234")
    await bridge.work()
    assert sim.served == 3  # three in-process attempts of the idempotent PATCH, then the breaker
    assert await breaker_state(bridge) == "open"
    (job,) = await writeback_jobs(bridge)
    assert job["status"] == "failed" and "503" in job["last_error"]["message"]

    bridge.clock.advance(25)  # the job is due again; the breaker (30 s) is still open
    await bridge.work()
    assert sim.served == 3  # failed fast: nothing was sent
    (job,) = await writeback_jobs(bridge)
    assert job["status"] == "failed" and "circuit open" in job["last_error"]["message"]
    assert job["last_error"]["type"].endswith("RetryLater")

    sim.faults.clear()  # Xentral is back
    bridge.clock.advance(60)  # past the open window: the next call is the half-open probe
    assert await breaker_state(bridge) == "half_open"
    await bridge.work()
    assert sim.served == 4 and sim.invoices["40001234"]["paymentStatus"] == "paid"
    assert await breaker_state(bridge) == "closed"
    (job,) = await writeback_jobs(bridge)
    assert job["status"] == "succeeded"


async def test_429_retry_after_reschedules_the_job(bridge: Bridge) -> None:
    bridge.xentral.add_invoice("40001234")
    bridge.xentral.throttle_next("120", times=1)
    await bridge.send_sale(document_number="40001234")
    await bridge.work()
    (job,) = await writeback_jobs(bridge)
    assert job["status"] == "failed"
    assert (job["run_after"] - bridge.clock.now).total_seconds() == pytest.approx(120, abs=1)
    bridge.clock.advance(121)
    await bridge.work()
    assert bridge.xentral.invoices["40001234"]["paymentStatus"] == "paid"


async def test_an_unknown_invoice_dead_letters_and_is_retryable(bridge: Bridge) -> None:
    await bridge.send_sale(document_number="555")
    await bridge.work()
    (job,) = await writeback_jobs(bridge)
    assert job["status"] == "dead" and job["attempts"] == 1
    assert "not found" in job["last_error"]["message"]
    bridge.xentral.add_invoice("555")  # the operator fixes it in Xentral
    await retry_job(bridge.db, job["id"], now=bridge.clock.now)
    await bridge.work()
    assert bridge.xentral.invoices["555"]["paymentStatus"] == "paid"
