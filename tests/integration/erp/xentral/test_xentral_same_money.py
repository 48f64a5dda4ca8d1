"""A second Xentral request for the same money is a duplicate, whatever its bytes (issue 13.1).

The repro of the outside run: one ``pos.cardPaymentCaptured`` for invoice 40009001 with
``"guid": null``, signed and sent once with compact JSON separators and once with ``", "`` /
``": "``. Both are accepted (they are different bytes, so two inbox rows), and processing must
still charge the card once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from support.webhooks import Bridge, make_config, open_bridge, set_secret_env
from tillbridge.config import Register
from tillbridge.connectors.gateways.fake import FakeConnector
from tillbridge.connectors.terminals.sandbox import SandboxTerminalConfig
from tillbridge.domain.states import PaymentState
from tillbridge.erp.xentral.tables import xentral_pos_payments
from tillbridge.inbound.tables import webhook_inbox
from tillbridge.money import Money
from tillbridge.simulators.xentral import card_payment_body, envelope
from tillbridge.store import payments_repo
from tillbridge.store.tables import payments

pytestmark = pytest.mark.anyio

INVOICE = "40009001"


def event(amount: str = "12.34", **kw: Any) -> dict[str, Any]:
    kw.setdefault("document_number", INVOICE)
    kw.setdefault("guid", None)
    return envelope(card_payment_body(Money.of(amount, "EUR"), **kw))


async def send_bytes(b: Bridge, body: bytes) -> int:
    r = await b.post(b.signed(body)[0])
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


async def rows_by_id(b: Bridge) -> list[Any]:
    async with b.db.read() as conn:
        stmt = select(webhook_inbox).order_by(webhook_inbox.c.id)
        return [r._mapping for r in await conn.execute(stmt)]


async def payment_list(b: Bridge) -> list[Any]:
    async with b.db.read() as conn:
        ids = (await conn.execute(select(payments.c.id).order_by(payments.c.id))).scalars()
        return [await payments_repo.get_payment(conn, i) for i in ids]


def charges(b: Bridge, name: str = "fake") -> int:
    fake = b.runtime.connectors[name]
    assert isinstance(fake, FakeConnector)
    return sum(fake.charges.values())


async def test_the_repro_other_separators_no_guid_charge_once(bridge: Bridge) -> None:
    payload = event(project_id=1)
    compact = json.dumps(payload, separators=(",", ":")).encode()
    spaced = json.dumps(payload, separators=(", ", ": ")).encode()
    assert compact != spaced and b'"guid":null' in compact
    first = await send_bytes(bridge, compact)
    second = await send_bytes(bridge, spaced)
    assert first != second  # the inbox sees two deliveries: the bytes differ
    await bridge.work()
    (p,) = await payment_list(bridge)
    assert p.reference == f"invoice:{INVOICE}" and p.state == PaymentState.CAPTURED
    assert charges(bridge) == 1
    rows = await rows_by_id(bridge)
    assert sorted(r["status"] for r in rows) == ["duplicate", "processed"]
    dup = next(r for r in rows if r["status"] == "duplicate")
    assert dup["result"]["payment_id"] == p.id
    assert "same money" in dup["result"]["reason"] and "1234 EUR" in dup["result"]["reason"]


async def test_the_repro_when_the_second_arrives_after_the_first_was_charged(
    bridge: Bridge,
) -> None:
    payload = event()
    await send_bytes(bridge, json.dumps(payload, separators=(",", ":")).encode())
    await bridge.work()
    await send_bytes(bridge, json.dumps(payload, separators=(", ", ": ")).encode())
    await bridge.work()
    assert len(await payment_list(bridge)) == 1 and charges(bridge) == 1
    assert [r["status"] for r in await rows_by_id(bridge)] == ["processed", "duplicate"]


@pytest.mark.parametrize(
    "second",
    [
        {"created_at": "2025-06-11T15:40:00+02:00"},  # a re-send stamped later
        {"guid": "pos-7"},  # a guid appears on the re-send
        {"project_id": "uuid-of-1", "project_number": "1"},  # the project by its number
        {"tip": Money.of("0.00", "EUR"), "payment_method": "Karte"},  # other fields only
    ],
    ids=["later-createdAt", "guid-on-resend", "project-by-number", "other-fields"],
)
async def test_any_other_bytes_for_the_same_money_are_a_duplicate(
    bridge: Bridge, second: dict[str, Any]
) -> None:
    await bridge.post(bridge.signed(event(guid="pos-6" if "guid" in second else None))[0])
    await bridge.post(bridge.signed(event(**second))[0])
    await bridge.work()
    assert len(await payment_list(bridge)) == 1 and charges(bridge) == 1
    assert sorted(r["status"] for r in await rows_by_id(bridge)) == ["duplicate", "processed"]


async def test_the_same_amount_split_into_amount_and_tip_is_the_same_money(bridge: Bridge) -> None:
    await bridge.post(bridge.signed(event("12.34"))[0])
    await bridge.post(bridge.signed(event("11.34", tip=Money.of("1.00", "EUR")))[0])
    await bridge.work()
    assert len(await payment_list(bridge)) == 1


async def test_other_money_for_the_same_document_is_a_new_payment(bridge: Bridge) -> None:
    """Partial payments of one invoice: other amounts, or a refund, are other intents."""
    await bridge.post(bridge.signed(event("10.00"))[0])
    await bridge.post(bridge.signed(event("2.34"))[0])
    await bridge.post(bridge.signed(event("12.34", document_number="40009002"))[0])
    await bridge.work()
    got = sorted((p.reference, p.amount.minor) for p in await payment_list(bridge))
    doc = f"invoice:{INVOICE}"
    assert got == [(doc, 234), (doc, 1000), ("invoice:40009002", 1234)]


async def test_after_a_decline_the_cashiers_next_try_is_charged(bridge: Bridge) -> None:
    """A declined payment moved no money: the same money asked again is a new intent."""
    await bridge.post(bridge.signed(event("12.51"))[0])  # the fake connector declines ..51
    await bridge.work()
    await bridge.post(bridge.signed(event("12.51", created_at="2025-06-11T15:33:00+02:00"))[0])
    await bridge.work()
    states = [p.state for p in await payment_list(bridge)]
    assert sorted(states) == [PaymentState.DECLINED, PaymentState.DECLINED]
    assert [r["status"] for r in await rows_by_id(bridge)] == ["processed", "processed"]
    async with bridge.db.read() as conn:
        keys = (await conn.execute(select(xentral_pos_payments.c.charge_key))).scalars().all()
    # The declined payment released the key, the new one holds it.
    held = f"lane1/purchase/invoice:{INVOICE}/1251 EUR"
    assert sorted(keys, key=lambda k: k or "") == [None, held]


async def test_the_same_money_at_another_register_is_another_intent(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_secret_env(monkeypatch)
    cfg = make_config(extra_registers={"lane2": Register(store="shop", xentral_project="2")})
    async with open_bridge(db_url, cfg) as b:
        await b.post(b.signed(event(project_id=1))[0])
        await b.post(b.signed(event(project_id=2))[0])
        await b.work()
        assert sorted(p.metadata["register"] for p in await payment_list(b)) == ["lane1", "lane2"]


async def test_a_refund_re_sent_with_other_bytes_pays_back_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_secret_env(monkeypatch)
    cfg = make_config().model_copy(
        update={
            "terminals": {"lane-term": SandboxTerminalConfig(store="shop")},
            "registers": {
                "lane1": Register(store="shop", terminal="lane-term", xentral_project="1")
            },
        }
    )
    async with open_bridge(db_url, cfg) as b:
        refund = event(operation="cancellation", document_type="credit_note")
        await send_bytes(b, json.dumps(refund, separators=(",", ":")).encode())
        await send_bytes(b, json.dumps(refund, indent=2).encode())
        await b.work()
        (p,) = await payment_list(b)
        assert p.state == PaymentState.REFUNDED and p.connector == "lane-term"
        assert sorted(r["status"] for r in await rows_by_id(b)) == ["duplicate", "processed"]
