"""A PAN inside a signed webhook body is masked in what is stored, after verification (13.2).

The signature is checked over the exact bytes the sender signed; only then is card data masked,
and from there on everything (processing, replay, the admin views, the dedupe key) reads the
masked body. Nothing at rest holds the PAN in clear.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from support.webhooks import Bridge
from tillbridge.domain.states import PaymentState
from tillbridge.inbound.tables import webhook_inbox
from tillbridge.money import Money
from tillbridge.simulators.xentral import card_payment_body, envelope
from tillbridge.store import payments_repo
from tillbridge.store.tables import payments

pytestmark = pytest.mark.anyio

PAN = "4111111111111111"


def sale_with_card_data() -> dict[str, Any]:
    body = card_payment_body(Money.of("12.34", "EUR"), document_number="40009003")
    # Fields Xentral does not document but a misconfigured POS might send along.
    body["paymentMethod"] = f"Visa {PAN}"
    body["cardNumber"] = int(PAN)
    body["cvv"] = "123"
    body["receipt"] = {"lines": ["VISA", "4111 1111 1111 1111", "TOTAL 12.34"]}
    return envelope(body)


async def everything_stored(b: Bridge) -> str:
    """Every inbox column and payment column, as one text to grep."""
    async with b.db.read() as conn:
        inbox = [dict(r._mapping) for r in await conn.execute(select(webhook_inbox))]
        pays = [dict(r._mapping) for r in await conn.execute(select(payments))]
    for row in inbox:
        row["raw_body"] = bytes(row["raw_body"]).decode()
    return json.dumps([inbox, pays], default=str)


async def test_card_data_in_a_signed_body_is_masked_at_rest_and_processing_works(
    bridge: Bridge,
) -> None:
    delivery = bridge.signed(sale_with_card_data())[0]
    assert PAN.encode() in delivery.body
    r = await bridge.post(delivery)
    assert r.status_code == 200, r.text  # verified over the raw bytes, PAN and all
    async with bridge.db.read() as conn:
        raw = (await conn.execute(select(webhook_inbox.c.raw_body))).scalar_one()
    stored = json.loads(raw)["body"]  # still valid JSON, same structure
    assert stored["paymentMethod"] == "Visa 411111******1111"
    assert stored["cardNumber"] == "411111******1111"
    assert stored["cvv"] == "[REDACTED]"
    assert stored["receipt"]["lines"][1] == "4111 11** **** 1111"
    await bridge.work()  # processing reads the masked body
    async with bridge.db.read() as conn:
        pid = (await conn.execute(select(payments.c.id))).scalar_one()
        p = await payments_repo.get_payment(conn, pid)
    assert p.state == PaymentState.CAPTURED and p.amount == Money(1234, "EUR")
    shown = await bridge.client.get(f"/v1/webhooks/inbox/{r.json()['id']}", headers=bridge.admin())
    assert shown.status_code == 200 and PAN not in shown.text
    replay = await bridge.client.post(
        f"/v1/webhooks/inbox/{r.json()['id']}/replay", headers=bridge.admin()
    )
    assert replay.status_code == 202
    await bridge.work()
    assert await bridge.count(payments) == 1
    text = await everything_stored(bridge)
    assert PAN not in text and "4111 1111 1111 1111" not in text and '"123"' not in text


async def test_the_same_bytes_again_are_still_one_delivery(bridge: Bridge) -> None:
    first, again = bridge.signed(sale_with_card_data(), duplicate=True)
    r1, r2 = await bridge.post(first), await bridge.post(again)
    assert r1.json() == r2.json()
    assert await bridge.count(webhook_inbox) == 1


async def test_a_body_without_card_data_is_stored_byte_for_byte(bridge: Bridge) -> None:
    delivery = bridge.signed(envelope(card_payment_body(Money.of("1.00", "EUR"))))[0]
    await bridge.post(delivery)
    async with bridge.db.read() as conn:
        raw = (await conn.execute(select(webhook_inbox.c.raw_body))).scalar_one()
    assert bytes(raw) == delivery.body
