"""Every ZVT flow against the simulator over real TCP sockets on 127.0.0.1."""

from __future__ import annotations

import pytest

from support.zvt_sockets import SimFactory, client, eur
from tillbridge.connectors.terminals.zvt.requests import (
    PurchaseRequest,
    RefundRequest,
    ReversalRequest,
)
from tillbridge.domain.states import Outcome
from tillbridge.payments.contract import ConnectorEvent, EventKind, ReceiptSide

pytestmark = pytest.mark.anyio


async def test_purchase_streams_events_and_returns_receipts(start_sim: SimFactory) -> None:
    sim = await start_sim()
    events: list[ConnectorEvent] = []

    async def on_event(event: ConnectorEvent) -> None:
        events.append(event)

    result = await client(sim).purchase(PurchaseRequest(eur(1234), "op-1", on_event))

    assert result.outcome is Outcome.SUCCEEDED
    assert result.amount == eur(1234)
    assert result.masked_pan == "672559******1234"
    assert (result.card_type, result.card_name) == ("girocard", "girocard")
    assert (result.trace_number, result.receipt_number) == ("000001", "0001")
    assert result.echo_id == result.trace_number
    assert result.terminal_id == "52500038"
    assert result.auth_code and result.vu_number
    assert result.result_code == "00"
    assert "  Kundenbeleg" in result.customer_receipt
    assert "  Händlerbeleg" in result.merchant_receipt  # CP437 on the wire, text here
    prompts = [e.text for e in events if e.kind is EventKind.PROMPT]
    assert prompts[:2] == ["INSERT CARD", "PLEASE WATCH THE PIN PAD"]
    sides = {e.receipt for e in events if e.kind is EventKind.RECEIPT_LINE}
    assert sides == {ReceiptSide.CUSTOMER, ReceiptSide.MERCHANT}
    assert sim.terminal.text_blocks_permitted  # 06 D3 was offered at registration and used
    assert sim.terminal.charges == 1


async def test_print_lines_without_text_blocks_and_latin1(start_sim: SimFactory) -> None:
    sim = await start_sim(charset="latin-1")
    result = await client(sim, permit_text_block=False, charset="latin-1").purchase(
        PurchaseRequest(eur(500), "op-1")
    )
    assert result.outcome is Outcome.SUCCEEDED
    assert not sim.terminal.text_blocks_permitted
    # Print lines carry no receipt type: the end-of-receipt mark switches merchant -> customer.
    assert result.merchant_receipt[1] == "  Händlerbeleg"
    assert result.customer_receipt[1] == "  Kundenbeleg"


async def test_decline_by_host(start_sim: SimFactory) -> None:
    sim = await start_sim()
    result = await client(sim).purchase(PurchaseRequest(eur(1051), "op-1"))
    assert result.outcome is Outcome.DECLINED
    assert result.result_code == "05"
    assert "Nicht genehmigt" in (result.result_text or "")
    assert result.receipt_number is None
    assert sim.terminal.charges == 0


async def test_customer_cancel_is_declined_with_reason(start_sim: SimFactory) -> None:
    sim = await start_sim()
    result = await client(sim).purchase(PurchaseRequest(eur(1052), "op-1"))
    assert result.outcome is Outcome.DECLINED
    assert result.result_code == "6C"
    assert result.result_text == "aborted by timeout or abort key"


async def test_refund_reversal_and_double_reversal(start_sim: SimFactory) -> None:
    sim = await start_sim()
    terminal = client(sim)
    sale = await terminal.purchase(PurchaseRequest(eur(2500), "op-1"))
    refund = await terminal.refund(RefundRequest(eur(700), "op-2"))
    assert refund.outcome is Outcome.SUCCEEDED
    rev = ReversalRequest(eur(2500), "op-3", receipt_number=sale.receipt_number)
    first = await terminal.reversal(rev)
    assert first.outcome is Outcome.SUCCEEDED
    second = await terminal.reversal(rev)
    assert second.outcome is Outcome.DECLINED
    assert second.result_text == "already reversed"
    unknown_receipt = await terminal.reversal(
        ReversalRequest(eur(1), "op-4", receipt_number="9999")
    )
    assert unknown_receipt.outcome is Outcome.DECLINED
    assert sim.terminal.booked_purchases == []


async def test_end_of_day_totals_add_up(start_sim: SimFactory) -> None:
    sim = await start_sim()
    terminal = client(sim)
    for n, minor in enumerate((1000, 2000, 1051, 3000)):
        await terminal.purchase(PurchaseRequest(eur(minor), f"op-{n}"))
    settlement = await terminal.settle()
    assert settlement.outcome is Outcome.SUCCEEDED
    assert settlement.total == eur(6000)  # the declined 10.51 is not in it
    assert settlement.count == 3
    assert [(s.scheme, s.count, s.total) for s in settlement.schemes] == [
        ("girocard", 3, eur(6000))
    ]
    assert (settlement.first_receipt_number, settlement.last_receipt_number) == ("0001", "0003")
    assert any("Kassenschnitt" in line for line in settlement.receipt)
    empty = await terminal.settle()  # a new batch
    assert empty.total == eur(0) and empty.count == 0


async def test_status_enquiry_diagnosis_log_off(start_sim: SimFactory) -> None:
    sim = await start_sim()
    terminal = client(sim)
    status = await terminal.status_enquiry()
    assert status.ok and status.terminal_status == 0
    assert status.sw_version == "TILLBRIDGE-SIM 1.0"
    assert (await terminal.diagnosis()).ok
    assert (await terminal.log_off()).ok
    assert not sim.terminal.registered
    # The next payment registers again before paying.
    assert (await terminal.purchase(PurchaseRequest(eur(100), "op-1"))).outcome is Outcome.SUCCEEDED
    assert sim.terminal.commands.count("Registration") == 2
    reg = await terminal.register()
    assert reg.ok and reg.terminal_id == "52500038"


async def test_repeat_receipt_returns_the_last_transaction(start_sim: SimFactory) -> None:
    sim = await start_sim()
    terminal = client(sim)
    sale = await terminal.purchase(PurchaseRequest(eur(4200), "op-1"))
    record, info = await terminal.repeat_last()
    assert info is not None
    assert (info.trace, info.receipt_number, info.amount) == (
        sale.trace_number,
        sale.receipt_number,
        4200,
    )
    assert record.completion is not None
    assert sim.terminal.charges == 1  # repeating is not paying
