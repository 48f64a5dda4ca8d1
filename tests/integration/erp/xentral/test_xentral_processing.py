"""Xentral POS events through the inbox into payments: exactly once, whatever happens."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import structlog
from sqlalchemy import select

from support.webhooks import Bridge, make_config, open_bridge, set_secret_env
from tillbridge.app.jobs import build_registry
from tillbridge.config import Register
from tillbridge.connectors.gateways.fake import FakeConnector
from tillbridge.connectors.terminals.sandbox import SandboxTerminalConfig
from tillbridge.connectors.terminals.zvt.connector import ZvtTerminalConfig
from tillbridge.domain.states import PaymentState
from tillbridge.erp.xentral.tables import xentral_pos_payments
from tillbridge.inbound.inbox import PROCESS_JOB
from tillbridge.inbound.tables import webhook_inbox
from tillbridge.money import Money
from tillbridge.payments.contract import Call, ConnectorResult, OperationRequest
from tillbridge.queue import JobContext, LeaseLost, Worker
from tillbridge.queue.tables import jobs
from tillbridge.simulators.xentral import card_payment_body, envelope
from tillbridge.store import payments_repo
from tillbridge.store.db import Database
from tillbridge.store.tables import payments

pytestmark = pytest.mark.anyio


def sale(amount: str = "12.34", currency: str = "EUR", **kw: Any) -> dict[str, Any]:
    return envelope(card_payment_body(Money.of(amount, currency), **kw))


async def inbox_rows(b: Bridge) -> list[Any]:
    async with b.db.read() as conn:
        return [r._mapping for r in await conn.execute(select(webhook_inbox))]


async def all_payments(b: Bridge) -> list[Any]:
    async with b.db.read() as conn:
        ids = (await conn.execute(select(payments.c.id))).scalars().all()
        return [await payments_repo.get_payment(conn, i) for i in ids]


async def test_a_sale_becomes_one_captured_payment_on_the_fake_fallback(bridge: Bridge) -> None:
    payload = sale("12.34", tip=Money.of("1.00", "EUR"), document_number="40001234")
    r = await bridge.post(bridge.signed(payload)[0])
    assert r.status_code == 200
    await bridge.work()
    (p,) = await all_payments(bridge)
    assert p.state == PaymentState.CAPTURED
    assert p.amount == Money(1334, "EUR")  # totalAmount + tip, exact
    assert p.reference == "invoice:40001234" and p.connector == "fake"
    assert p.metadata["connector_fallback"] == "fake" and p.metadata["register"] == "lane1"
    assert p.metadata["xentral_inbox_id"] == r.json()["id"] and p.metadata["tip"] == 100
    (row,) = await inbox_rows(bridge)
    assert row["status"] == "processed" and row["result"]["payment_id"] == p.id
    assert row["event_type"] == "pos.cardPaymentCaptured" and row["attempts"] == 1
    fake = bridge.runtime.connectors["fake"]
    assert isinstance(fake, FakeConnector) and sum(fake.charges.values()) == 1


async def test_the_registers_terminal_is_the_connector_when_it_exists(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_secret_env(monkeypatch)
    cfg = make_config().model_copy(
        update={
            "terminals": {"lane-term": SandboxTerminalConfig(store="shop")},
            "registers": {
                "lane1": Register(store="shop", terminal="lane-term", xentral_project="1"),
                "lane2": Register(store="shop", terminal="lane-term", xentral_project="POS-02"),
            },
        }
    )
    async with open_bridge(db_url, cfg) as b:
        assert "fake" in b.runtime.connectors  # configured on purpose in these tests
        await b.send_sale()
        await b.send_sale(project_id="uuid-2", project_number="POS-02", document_number="2")
        await b.work()
        got = sorted((p.connector, p.metadata["register"]) for p in await all_payments(b))
    assert got == [("lane-term", "lane1"), ("lane-term", "lane2")]


async def test_unknown_event_types_are_stored_and_acknowledged_not_processed(
    bridge: Bridge,
) -> None:
    other = {"type": "com.xentral.salesOrder.protocolCreated.v1", "body": {"salesOrderId": 169}}
    assert (await bridge.post(bridge.signed(other)[0])).status_code == 200
    await bridge.work()
    (row,) = await inbox_rows(bridge)
    assert row["status"] == "ignored" and row["event_type"] == "salesOrder.protocolCreated"
    assert await bridge.count(payments) == 0


@pytest.mark.parametrize(
    ("total", "currency"), [("12.345", "EUR"), ("12.5", "JPY"), ("0.0001", "KWD")]
)
async def test_amounts_not_exact_for_the_currency_are_invalid_never_retried(
    bridge: Bridge, total: str, currency: str
) -> None:
    body = sale("1", currency)
    body["body"]["totalAmount"] = float(total)
    assert (await bridge.post(bridge.signed(body)[0])).status_code == 200
    await bridge.work()
    (row,) = await inbox_rows(bridge)
    assert row["status"] == "invalid" and "not exact" in row["error"]
    assert row["result"] == {"code": "amount_not_exact"}
    async with bridge.db.read() as conn:
        job = (await conn.execute(select(jobs).where(jobs.c.kind == PROCESS_JOB))).one()
    assert job.status == "succeeded" and job.attempts == 1
    assert await bridge.count(payments) == 0


@pytest.mark.parametrize(
    "mode", ["no_terminal_integration", "send_to_terminal_manual_confirmation"]
)
async def test_other_terminal_modes_are_recorded_not_sent(bridge: Bridge, mode: str) -> None:
    await bridge.send_sale(terminal_mode=mode)
    await bridge.work()
    (row,) = await inbox_rows(bridge)
    assert row["status"] == "recorded" and mode in row["result"]["reason"]
    assert await bridge.count(payments) == 0


async def test_seed_guide_variant_without_settings_starts_a_payment(bridge: Bridge) -> None:
    body = card_payment_body(Money.of("25.90", "EUR"), variant="seed", operation="sale")
    assert (await bridge.post(bridge.signed(body)[0])).status_code == 200
    await bridge.work()
    (p,) = await all_payments(bridge)
    assert p.amount == Money(2590, "EUR") and p.state == PaymentState.CAPTURED


async def test_a_cancellation_is_recorded_as_not_supported_naming_the_sale(bridge: Bridge) -> None:
    await bridge.send_sale(document_number="777")
    await bridge.work()
    (original,) = await all_payments(bridge)
    await bridge.send_sale(operation="cancellation", document_number="777")
    await bridge.work()
    rows = sorted(await inbox_rows(bridge), key=lambda r: r["id"])
    assert rows[1]["status"] == "recorded"
    assert rows[1]["result"]["original_payment_id"] == original.id
    assert "not supported" in rows[1]["result"]["reason"]
    assert await bridge.count(payments) == 1


async def test_unmapped_project_dead_letters_then_replays_after_the_fix(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_secret_env(monkeypatch)
    async with open_bridge(db_url, make_config()) as b:
        r = await b.send_sale(project_id=99)
        await b.work()
        (row,) = await inbox_rows(b)
        assert row["status"] == "dead" and "no register maps xentral project 99" in row["error"]
        listed = await b.client.get("/v1/webhooks/inbox?status=dead", headers=b.admin())
        assert [i["id"] for i in listed.json()["data"]] == [r.json()["id"]]
    # The operator maps project 99 and restarts; the replay then creates the payment.
    fixed = make_config(extra_registers={"lane9": Register(store="shop", xentral_project="99")})
    async with open_bridge(db_url, fixed) as b:
        replay = await b.client.post(
            f"/v1/webhooks/inbox/{r.json()['id']}/replay", headers=b.admin()
        )
        assert replay.status_code == 202, replay.text
        await b.work()
        (p,) = await all_payments(b)
        assert p.metadata["register"] == "lane9"
        (row,) = await inbox_rows(b)
        assert row["status"] == "processed" and row["replays"] == 1


async def test_no_terminal_and_no_configured_sandbox_dead_letters_without_a_payment(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never "pay" a real Xentral sale on the sandbox just because a terminal is missing."""
    set_secret_env(monkeypatch)
    cfg = make_config().model_copy(update={"connectors": {}})
    async with open_bridge(db_url, cfg) as b:
        await b.send_sale()
        await b.work()
        (row,) = await inbox_rows(b)
        assert row["status"] == "dead" and "has no terminal" in row["error"]
        assert await all_payments(b) == []


async def test_crash_after_the_inbox_commit_processes_exactly_once_after_restart(
    bridge: Bridge,
) -> None:
    r = await bridge.send_sale()
    assert r.status_code == 200
    # "Restart": a new database engine and a new worker find the job the commit left behind.
    fresh = Database(bridge.db.url)
    try:
        await bridge.work(fresh)
        await bridge.work(fresh)
    finally:
        await fresh.dispose()
    assert await bridge.count(payments) == 1
    assert await bridge.count(xentral_pos_payments) == 1


async def test_a_run_that_lost_its_lease_leaves_nothing_behind(bridge: Bridge) -> None:
    await bridge.send_sale()
    async with bridge.db.read() as conn:
        job = (await conn.execute(select(jobs).where(jobs.c.kind == PROCESS_JOB))).one()
    handler = build_registry(bridge.runtime).get(PROCESS_JOB).handler
    ghost = JobContext(
        job_id=job.id,
        kind=PROCESS_JOB,
        payload=dict(job.payload),
        attempt=1,
        key=None,
        queue="default",
        db=bridge.db,
        log=structlog.get_logger(),
        worker_id="a-worker-that-never-claimed-it",
        clock=bridge.clock,
    )
    with pytest.raises(LeaseLost):
        await handler(ghost)  # its payment insert rolls back with the failed completion
    assert await bridge.count(payments) == 0
    await bridge.work()
    assert await bridge.count(payments) == 1


async def test_replaying_a_processed_event_creates_nothing_new(bridge: Bridge) -> None:
    r = await bridge.send_sale()
    await bridge.work()
    (p,) = await all_payments(bridge)
    for _ in range(2):
        resp = await bridge.client.post(
            f"/v1/webhooks/inbox/{r.json()['id']}/replay", headers=bridge.admin()
        )
        assert resp.status_code == 202
        await bridge.work()
    assert [x.id for x in await all_payments(bridge)] == [p.id]
    (row,) = await inbox_rows(bridge)
    assert row["status"] == "processed" and row["result"]["payment_id"] == p.id
    assert row["replays"] == 2


async def test_same_guid_with_different_bytes_is_a_duplicate(bridge: Bridge) -> None:
    await bridge.send_sale(guid="pos-line-1", created_at="2025-06-11T15:32:00+02:00")
    await bridge.send_sale(guid="pos-line-1", created_at="2025-06-11T15:32:09+02:00")
    await bridge.work()
    # On PostgreSQL both jobs run at once and either may win the race; exactly one does.
    rows = sorted(await inbox_rows(bridge), key=lambda r: r["status"])
    assert [r["status"] for r in rows] == ["duplicate", "processed"]
    assert rows[0]["result"]["payment_id"] == rows[1]["result"]["payment_id"]
    assert await bridge.count(payments) == 1


@dataclass
class GatedConnector(FakeConnector):
    """A fake terminal that holds the sale until the test releases it."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def purchase(self, req: OperationRequest, call: Call) -> ConnectorResult:
        self.entered.set()
        await self.release.wait()
        return await FakeConnector.purchase(self, req, call)


async def test_a_repeat_while_the_first_is_still_processing_has_one_effect(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_secret_env(monkeypatch)
    gated = GatedConnector(name="fake")
    async with open_bridge(db_url, make_config(), connectors={"fake": gated}) as b:
        first, again = b.signed(sale(), duplicate=True)
        r1 = await b.post(first)
        stop = asyncio.Event()
        worker = Worker(b.db, build_registry(b.runtime), clock=b.clock, scheduler=False)
        task = asyncio.create_task(worker.run(stop))
        try:
            with anyio.fail_after(30):
                await gated.entered.wait()  # the terminal is taking the payment right now
            r2 = await b.post(again)
            assert r2.status_code == 200 and r2.content == r1.content
        finally:
            gated.release.set()
            stop.set()
            with anyio.fail_after(30):
                await task
        await b.work()
        (p,) = await all_payments(b)
        assert p.state == PaymentState.CAPTURED
        assert sum(gated.charges.values()) == 1
        assert await b.count(webhook_inbox) == 1


async def test_a_decline_is_a_declined_payment(bridge: Bridge) -> None:
    await bridge.send_sale("12.51")  # the fake connector's decline amount
    await bridge.work()
    (p,) = await all_payments(bridge)
    assert p.state == PaymentState.DECLINED


async def test_recorded_events_need_no_register(bridge: Bridge) -> None:
    await bridge.send_sale(project_id=42, terminal_mode="no_terminal_integration")
    await bridge.send_sale(project_id=42, operation="cancellation", document_number="9")
    await bridge.work()
    rows = await inbox_rows(bridge)
    assert [r["status"] for r in rows] == ["recorded", "recorded"]
    assert all(r["result"]["register"] is None for r in rows)


async def test_a_refund_at_a_register_with_a_terminal_pays_back_on_the_terminal(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``refund`` from Xentral POS becomes a card refund on the register's ZVT terminal."""
    from tillbridge.simulators.zvt import serve_tcp

    set_secret_env(monkeypatch)
    sim = await serve_tcp("127.0.0.1", 0)
    try:
        cfg = make_config().model_copy(
            update={
                "terminals": {"lane-zvt": ZvtTerminalConfig(host="127.0.0.1", port=sim.port)},
                "registers": {
                    "lane1": Register(store="shop", terminal="lane-zvt", xentral_project="1")
                },
            }
        )
        async with open_bridge(db_url, cfg) as b:
            await b.send_sale(operation="refund", document_number="888")
            await b.work()
            (p,) = await all_payments(b)
            (row,) = await inbox_rows(b)
    finally:
        await sim.close()
    assert row["status"] == "processed" and row["result"]["payment_id"] == p.id
    assert p.connector == "lane-zvt" and p.state == PaymentState.REFUNDED
    assert p.refunded_minor == p.amount.minor
