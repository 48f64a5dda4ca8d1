"""Faults over real TCP sockets: cut links, missing Completion, busy, cancel, garbage.

Synchronisation uses the simulator's events (``card_waiting``), never sleeps; timers that are
part of the protocol (T3/T4) are configured short where a test needs one to fire.
"""

from __future__ import annotations

import anyio
import pytest

from support.zvt_sockets import SimFactory, client, eur
from tillbridge.connectors.terminals.zvt import ZvtTerminal
from tillbridge.connectors.terminals.zvt.requests import PurchaseRequest, StatusQuery
from tillbridge.domain.states import OperationKind, Outcome
from tillbridge.errors import TerminalBusy
from tillbridge.payments.contract import ConnectorResult

pytestmark = pytest.mark.anyio


def query_for(result: ConnectorResult, **kw: str | None) -> StatusQuery:
    assert result.amount is not None
    return StatusQuery(
        result.reference or "op",
        OperationKind.PURCHASE,
        result.amount,
        echo_id=kw.get("echo_id", result.echo_id),
        receipt_number=kw.get("receipt_number", result.receipt_number),
        previous_echo_id=kw.get("previous_echo_id"),
    )


async def test_cut_after_status_information_then_recovery(start_sim: SimFactory) -> None:
    sim = await start_sim()
    persisted: list[ConnectorResult] = []

    async def persist(result: ConnectorResult) -> None:
        persisted.append(result)

    terminal = client(sim, persist_result=persist)
    result = await terminal.purchase(PurchaseRequest(eur(1299), "op-1"))
    assert result.outcome is Outcome.UNKNOWN
    assert "never resend" in (result.detail or "")
    # The decision point ran: the engine holds trace and receipt number to recover with.
    assert [p.trace_number for p in persisted] == [result.trace_number] == ["000001"]

    # Recovery on a new connection, by a new client, with what the engine persisted.
    recovered = await client(sim).query_status(query_for(persisted[0]))
    assert recovered.outcome is Outcome.SUCCEEDED
    assert recovered.receipt_number == "0001"
    assert sim.terminal.charges == 1  # charged exactly once: nothing was resent
    assert sim.terminal.commands.count("Authorization") == 1


async def test_cut_before_the_status_information_arrives(start_sim: SimFactory) -> None:
    # The PT approves and books, then the link dies before the result is sent. The engine
    # knows only what it persisted before sending: the amount and the previous trace number.
    sim = await start_sim()
    terminal = client(sim)
    first = await terminal.purchase(PurchaseRequest(eur(1000), "op-1"))
    lost = await terminal.purchase(PurchaseRequest(eur(1097), "op-2"))
    assert lost.outcome is Outcome.UNKNOWN
    assert lost.trace_number is None
    query = StatusQuery("op-2", OperationKind.PURCHASE, eur(1097), previous_echo_id=first.echo_id)
    recovered = await client(sim).query_status(query)
    assert recovered.outcome is Outcome.SUCCEEDED
    assert recovered.trace_number == "000002"
    assert sim.terminal.charges == 2
    assert sim.terminal.commands.count("Authorization") == 2


async def test_terminal_that_reverses_unacknowledged_payments(start_sim: SimFactory) -> None:
    sim = await start_sim(unacked_policy="reverse")
    result = await client(sim).purchase(PurchaseRequest(eur(1299), "op-1"))
    assert result.outcome is Outcome.UNKNOWN
    recovered = await client(sim).query_status(query_for(result))
    assert recovered.outcome is Outcome.DECLINED
    assert recovered.result_code == "6C"
    assert sim.terminal.booked_purchases == []


async def test_recovery_when_our_sale_never_reached_the_journal(start_sim: SimFactory) -> None:
    sim = await start_sim()
    terminal = client(sim)
    first = await terminal.purchase(PurchaseRequest(eur(1000), "op-1"))
    query = StatusQuery("op-2", OperationKind.PURCHASE, eur(2000), previous_echo_id=first.echo_id)
    recovered = await terminal.query_status(query)
    assert recovered.outcome is Outcome.DECLINED
    assert recovered.trace_number is None  # the PT's last transaction is not ours


async def test_link_cut_after_acknowledgement_before_completion(start_sim: SimFactory) -> None:
    sim = await start_sim()
    result = await client(sim).purchase(PurchaseRequest(eur(1098), "op-1"))
    # Acknowledged, but no Completion and a dead link: the ECR cannot know the PT got the ack.
    assert result.outcome is Outcome.UNKNOWN
    assert result.trace_number == "000001"
    recovered = await client(sim).query_status(query_for(result))
    assert recovered.outcome is Outcome.SUCCEEDED
    assert sim.terminal.charges == 1


async def test_missing_completion_is_handled_by_the_t4_timer(start_sim: SimFactory) -> None:
    sim = await start_sim(send_completion=False)
    result = await client(sim, t4=1.0).purchase(PurchaseRequest(eur(1000), "op-1"))
    assert result.outcome is Outcome.SUCCEEDED
    assert "T4" in (result.detail or "")
    assert result.customer_receipt


async def test_missing_completion_as_a_configured_vendor_quirk(start_sim: SimFactory) -> None:
    sim = await start_sim(send_completion=False)
    terminal = client(sim, expect_completion=False, completion_grace=0.5)
    result = await terminal.purchase(PurchaseRequest(eur(1000), "op-1"))
    assert result.outcome is Outcome.SUCCEEDED
    assert result.detail and "no Completion" in result.detail


async def test_cancel_from_the_ecr(start_sim: SimFactory) -> None:
    sim = await start_sim(hold_card=True)
    terminal = client(sim)
    results: list[ConnectorResult] = []
    async with anyio.create_task_group() as tg:

        async def pay() -> None:
            results.append(await terminal.purchase(PurchaseRequest(eur(1000), "op-1")))

        tg.start_soon(pay)
        with anyio.fail_after(5):
            await sim.terminal.card_waiting.wait()
        assert await terminal.cancel()
    assert results[0].outcome is Outcome.DECLINED
    assert results[0].result_code == "6C"
    assert sim.terminal.charges == 0
    assert not await terminal.cancel()  # nothing runs any more


async def test_second_session_gets_busy(start_sim: SimFactory) -> None:
    sim = await start_sim(hold_card=True)
    results: list[ConnectorResult] = []
    async with anyio.create_task_group() as tg:

        async def pay() -> None:
            results.append(await client(sim).purchase(PurchaseRequest(eur(1000), "op-1")))

        tg.start_soon(pay)
        with anyio.fail_after(5):
            await sim.terminal.card_waiting.wait()
        with pytest.raises(TerminalBusy):
            await client(sim).purchase(PurchaseRequest(eur(2000), "op-2"))
        sim.terminal.release_card()
    assert results[0].outcome is Outcome.SUCCEEDED
    assert sim.terminal.busy_rejections == 1
    assert sim.terminal.charges == 1


async def test_terminal_that_stays_busy(start_sim: SimFactory) -> None:
    sim = await start_sim(busy=True)
    terminal = client(sim)
    with pytest.raises(TerminalBusy):
        await terminal.purchase(PurchaseRequest(eur(1000), "op-1"))
    sim.configure(busy=False)
    assert (
        await terminal.purchase(PurchaseRequest(eur(1000), "op-1"))
    ).outcome is Outcome.SUCCEEDED
    assert sim.terminal.busy_rejections == 1


async def test_garbage_instead_of_an_answer(start_sim: SimFactory) -> None:
    sim = await start_sim(garbage=b"HTTP/1.1 400 Bad Request\r\n\r\n", garbage_command=(6, 1))
    result = await client(sim).purchase(PurchaseRequest(eur(1000), "op-1"))
    assert result.outcome is Outcome.UNKNOWN  # the authorization had gone out
    assert "cannot start a ZVT APDU" in (result.detail or "")
    assert "another protocol" in (result.detail or "")


async def test_garbage_before_the_payment_was_sent(start_sim: SimFactory) -> None:
    sim = await start_sim(garbage=bytes.fromhex("150369"))
    result = await client(sim).purchase(PurchaseRequest(eur(1000), "op-1"))
    assert result.outcome is Outcome.NOT_SENT  # only the registration went out
    assert "serial" in (result.detail or "")
    assert sim.terminal.charges == 0


async def test_connection_refused_is_not_sent(start_sim: SimFactory) -> None:
    sim = await start_sim()
    port = sim.port
    await sim.close()
    assert port is not None
    result = await ZvtTerminal.tcp("127.0.0.1", port).purchase(PurchaseRequest(eur(1000), "op"))
    assert result.outcome is Outcome.NOT_SENT
    recovery = await ZvtTerminal.tcp("127.0.0.1", port).query_status(
        StatusQuery("op", OperationKind.PURCHASE, eur(1000), echo_id="000001")
    )
    assert recovery.outcome is Outcome.UNKNOWN  # asking failed: that proves nothing
