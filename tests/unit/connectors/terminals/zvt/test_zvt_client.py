"""ZvtTerminal against the simulated PT over in-memory links: outcome rules and the
decision point. Socket and PTY tests live in tests/integration/zvt."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import anyio
import pytest

from support.zvt_memory import MemoryPT
from tillbridge.connectors.terminals.zvt import ZvtConfig, ZvtTerminal
from tillbridge.connectors.terminals.zvt.apdu import Apdu, ack
from tillbridge.connectors.terminals.zvt.connector import ZvtConnector
from tillbridge.connectors.terminals.zvt.link import ZvtLink, memory_link_pair
from tillbridge.connectors.terminals.zvt.messages import Completion, StatusInformation
from tillbridge.connectors.terminals.zvt.requests import PurchaseRequest, ReversalRequest
from tillbridge.domain.states import Outcome
from tillbridge.errors import NotSent, TerminalBusy, ValidationError
from tillbridge.money import Money
from tillbridge.payments.contract import Connector as TerminalConnector
from tillbridge.payments.contract import ConnectorEvent, ConnectorResult, EventKind

pytestmark = pytest.mark.anyio

EUR = "EUR"


@pytest.fixture
async def pt() -> AsyncIterator[MemoryPT]:
    sim = MemoryPT()
    yield sim
    await sim.aclose()


def buy(minor: int, ref: str = "op-1") -> PurchaseRequest:
    return PurchaseRequest(Money(minor, EUR), ref)


async def test_implements_the_contract(pt: MemoryPT) -> None:
    connector = ZvtConnector(
        "lane1", lambda persist: ZvtTerminal(pt.connect, persist_result=persist),
        link="memory", currency="EUR",
    )  # fmt: skip
    assert isinstance(connector, TerminalConnector)
    caps = connector.capabilities
    assert caps.query_last_only and caps.reversal and caps.receipts
    assert caps.input == frozenset({"abort"}) and not caps.refund


async def test_persist_runs_before_the_status_information_is_acknowledged(pt: MemoryPT) -> None:
    persisted: list[ConnectorResult] = []

    async def persist(result: ConnectorResult) -> None:
        pt.log.append("persist")
        persisted.append(result)

    terminal = ZvtTerminal(pt.connect, persist_result=persist)
    result = await terminal.purchase(buy(1234))
    assert result.outcome is Outcome.SUCCEEDED
    status_at = pt.log.index("recv 040F")
    assert pt.log[status_at + 1 : status_at + 3] == ["persist", "send 8000"]
    assert persisted[0].trace_number == result.trace_number == result.echo_id
    assert persisted[0].outcome is Outcome.SUCCEEDED


async def test_failing_persist_refuses_the_payment_and_reraises(pt: MemoryPT) -> None:
    async def persist(result: ConnectorResult) -> None:
        raise RuntimeError("database down")

    terminal = ZvtTerminal(pt.connect, persist_result=persist)
    with pytest.raises(RuntimeError, match="database down"):
        await terminal.purchase(buy(1000))
    assert "send 8466" in pt.log  # "goods not issued": the PT reverses
    assert pt.terminal.booked_purchases == []
    assert pt.terminal.journal[-1].state == "refused_by_ecr"


async def test_second_concurrent_call_is_busy(pt: MemoryPT) -> None:
    pt.terminal.knobs = dataclasses.replace(pt.terminal.knobs, hold_card=True)
    terminal = ZvtTerminal(pt.connect)
    async with anyio.create_task_group() as tg:
        results: list[ConnectorResult] = []

        async def first() -> None:
            results.append(await terminal.purchase(buy(1000)))

        tg.start_soon(first)
        with anyio.fail_after(5):
            await pt.terminal.card_waiting.wait()
        with pytest.raises(TerminalBusy):
            await terminal.purchase(buy(2000, "op-2"))
        pt.terminal.release_card()
    assert results[0].outcome is Outcome.SUCCEEDED
    assert pt.terminal.charges == 1


async def test_terminal_answering_receiver_not_ready_is_busy() -> None:
    sim = MemoryPT(busy=True)
    try:
        with pytest.raises(TerminalBusy):
            await ZvtTerminal(sim.connect).purchase(buy(1000))
        assert sim.terminal.charges == 0
    finally:
        await sim.aclose()


async def test_connect_failure_is_not_sent() -> None:
    async def refuse() -> ZvtLink:
        raise NotSent("connection refused")

    result = await ZvtTerminal(refuse).purchase(buy(1000))
    assert result.outcome is Outcome.NOT_SENT
    assert "refused" in (result.detail or "")


def scripted(
    script: Callable[[ZvtLink], Coroutine[Any, Any, None]],
) -> tuple[Callable[[], Awaitable[ZvtLink]], list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []

    async def connect() -> ZvtLink:
        client, pt = memory_link_pair()
        tasks.append(asyncio.create_task(script(pt)))
        return client

    return connect, tasks


async def _registered(link: ZvtLink) -> None:
    await link.recv_apdu(5)
    await link.send_apdu(ack())
    await link.send_apdu(Completion(terminal_id="52500038").to_apdu())
    await link.recv_apdu(5)


async def test_link_lost_after_sending_the_authorization_is_unknown() -> None:
    async def script(link: ZvtLink) -> None:
        await _registered(link)
        await link.recv_apdu(5)  # the authorization arrives ...
        await link.close()  # ... and the cable is pulled

    connect, _ = scripted(script)
    result = await ZvtTerminal(connect).purchase(buy(1000))
    assert result.outcome is Outcome.UNKNOWN
    assert "never resend" in (result.detail or "")


async def test_no_answer_within_t3_is_unknown() -> None:
    async def script(link: ZvtLink) -> None:
        await _registered(link)
        await link.recv_apdu(5)
        await anyio.sleep_forever()

    connect, tasks = scripted(script)
    result = await ZvtTerminal(connect, config=ZvtConfig(t3=0.2)).purchase(buy(1000))
    assert result.outcome is Outcome.UNKNOWN
    for task in tasks:
        task.cancel()


async def test_unreadable_status_information_is_refused_and_unknown() -> None:
    answers: list[Apdu] = []

    async def script(link: ZvtLink) -> None:
        await _registered(link)
        await link.recv_apdu(5)
        await link.send_apdu(ack())
        # 04 0F with an unknown BMP FE: the ECR cannot read the result.
        await link.send_apdu(Apdu(0x04, 0x0F, bytes.fromhex("2700FE01")))
        answers.append(await link.recv_apdu(5))
        await link.close()

    connect, tasks = scripted(script)
    result = await ZvtTerminal(connect).purchase(buy(1000))
    await asyncio.gather(*tasks)
    assert result.outcome is Outcome.UNKNOWN
    assert answers == [Apdu(0x84, 0x9A)]


async def test_unsupported_pt_requests_are_refused_and_the_flow_goes_on() -> None:
    answers: list[Apdu] = []

    async def script(link: ZvtLink) -> None:
        await _registered(link)
        await link.recv_apdu(5)
        await link.send_apdu(ack())
        await link.send_apdu(Apdu(0x04, 0x0E, b"\x00"))  # menu request: this ECR has no menu
        answers.append(await link.recv_apdu(5))
        info = StatusInformation(result_code=0, amount=1000, trace="000007", receipt_number="0007")
        await link.send_apdu(info.to_apdu())
        answers.append(await link.recv_apdu(5))
        await link.send_apdu(Completion().to_apdu())
        answers.append(await link.recv_apdu(5))

    connect, tasks = scripted(script)
    result = await ZvtTerminal(connect).purchase(buy(1000))
    await asyncio.gather(*tasks)
    assert result.outcome is Outcome.SUCCEEDED
    assert answers == [Apdu(0x84, 0x83), ack(), ack()]


async def test_not_registered_answer_triggers_one_registration(pt: MemoryPT) -> None:
    terminal = ZvtTerminal(pt.connect)
    assert (await terminal.purchase(buy(1000))).outcome is Outcome.SUCCEEDED
    pt.terminal.registered = False  # e.g. another ECR logged off
    assert (await terminal.purchase(buy(2000, "op-2"))).outcome is Outcome.SUCCEEDED
    assert pt.terminal.commands.count("Registration") == 2
    assert pt.terminal.charges == 2


async def test_terminal_without_completion_ends_after_grace() -> None:
    sim = MemoryPT(send_completion=False)
    try:
        cfg = ZvtConfig(expect_completion=False, completion_grace=0.2)
        result = await ZvtTerminal(sim.connect, config=cfg).purchase(buy(1000))
        assert result.outcome is Outcome.SUCCEEDED
        assert result.customer_receipt  # receipts after the result were still collected
    finally:
        await sim.aclose()


async def test_a_failing_event_callback_does_not_break_the_payment(pt: MemoryPT) -> None:
    seen: list[ConnectorEvent] = []

    async def on_event(event: ConnectorEvent) -> None:
        seen.append(event)
        raise ValueError("listener bug")

    req = PurchaseRequest(Money(1000, EUR), "op-1", on_event)
    result = await ZvtTerminal(pt.connect).purchase(req)
    assert result.outcome is Outcome.SUCCEEDED
    assert any(e.kind is EventKind.PROMPT for e in seen)


async def test_bad_requests_are_validation_errors(pt: MemoryPT) -> None:
    terminal = ZvtTerminal(pt.connect)
    with pytest.raises(ValidationError):
        await terminal.purchase(buy(0))
    with pytest.raises(ValidationError):
        await terminal.reversal(ReversalRequest(Money(100, EUR), "r"))
    assert pt.terminal.commands == []


async def test_receipt_sync_reverses_what_the_ecr_never_saw(pt: MemoryPT) -> None:
    first = await ZvtTerminal(pt.connect).purchase(buy(1000))
    assert first.receipt_number == "0001"
    # A client that (wrongly) believes the last receipt is 0000: the PT reverses 0001.
    stale = ZvtTerminal(pt.connect, config=ZvtConfig(receipt_sync=True), last_receipt_number=0)
    assert (await stale.purchase(buy(2000, "op-2"))).outcome is Outcome.SUCCEEDED
    assert pt.terminal.journal[0].state == "auto_reversed"
    # In sync (last receipt 0002): nothing is reversed.
    synced = ZvtTerminal(pt.connect, config=ZvtConfig(receipt_sync=True), last_receipt_number=2)
    assert (await synced.purchase(buy(3000, "op-3"))).outcome is Outcome.SUCCEEDED
    assert synced.last_receipt_number == 3
    assert [t.state for t in pt.terminal.journal] == ["auto_reversed", "approved", "approved"]
