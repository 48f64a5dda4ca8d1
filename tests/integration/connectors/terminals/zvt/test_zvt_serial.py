"""ZVT over a real serial line: a PTY pair from socat, the simulator on one end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from support.zvt_sockets import eur
from tillbridge.connectors.terminals.zvt import ZvtConfig, ZvtTerminal
from tillbridge.connectors.terminals.zvt.link import ZvtLink
from tillbridge.connectors.terminals.zvt.requests import PurchaseRequest
from tillbridge.connectors.terminals.zvt.serial import SerialLink
from tillbridge.domain.states import Outcome
from tillbridge.simulators.zvt import SimulatorHandle, serve_serial

pytestmark = pytest.mark.anyio

Rig = Callable[..., Awaitable[tuple[SimulatorHandle, ZvtTerminal, list[SerialLink]]]]


@pytest.fixture
async def rig(pty_pair: tuple[str, str]) -> AsyncIterator[Rig]:
    """Simulator on one PTY, a client on the other; the client's links are kept for stats."""
    pt_side, ecr_side = pty_pair
    handles: list[SimulatorHandle] = []

    async def build(**knobs: Any) -> tuple[SimulatorHandle, ZvtTerminal, list[SerialLink]]:
        handle = await serve_serial(pt_side, **knobs)
        handles.append(handle)
        links: list[SerialLink] = []

        async def connect() -> ZvtLink:
            link = await SerialLink.open(ecr_side)
            links.append(link)
            return link

        return handle, ZvtTerminal(connect, config=ZvtConfig()), links

    yield build
    for handle in handles:
        await handle.close()


async def test_purchase_and_settlement_over_serial(rig: Rig) -> None:
    sim, terminal, links = await rig()
    result = await terminal.purchase(PurchaseRequest(eur(1234), "op-1"))
    assert result.outcome is Outcome.SUCCEEDED
    assert result.customer_receipt
    settlement = await terminal.settle()
    assert settlement.total == eur(1234)
    assert sum(link.stats.naks_sent + link.stats.naks_received for link in links) == 0
    assert sim.terminal.charges == 1


async def test_corrupt_crc_is_naked_and_repeated(rig: Rig) -> None:
    sim, terminal, links = await rig(corrupt_crc_once=True)
    result = await terminal.purchase(PurchaseRequest(eur(1000), "op-1"))
    assert result.outcome is Outcome.SUCCEEDED
    assert links[0].stats.naks_sent == 1  # the client refused the bad frame ...
    assert sim.terminal.serial_stats[0].repeats == 1  # ... and the PT sent it again
    assert sim.terminal.charges == 1


async def test_nak_from_the_terminal_makes_the_client_repeat(rig: Rig) -> None:
    sim, terminal, links = await rig(nak_once=True)
    result = await terminal.purchase(PurchaseRequest(eur(1000), "op-1"))
    assert result.outcome is Outcome.SUCCEEDED
    assert links[0].stats.naks_received == 1
    assert links[0].stats.repeats == 1
    assert sim.terminal.commands.count("Registration") == 1  # the repeat is not a new command


async def test_decline_over_serial(rig: Rig) -> None:
    sim, terminal, _ = await rig()
    result = await terminal.purchase(PurchaseRequest(eur(1051), "op-1"))
    assert result.outcome is Outcome.DECLINED
    assert result.result_code == "05"
    assert sim.terminal.charges == 0


async def test_garbage_on_the_line_is_a_clear_error(pty_pair: tuple[str, str]) -> None:
    pt_side, ecr_side = pty_pair
    sim = await serve_serial(pt_side, garbage=b"this is not ZVT")
    try:

        async def connect() -> ZvtLink:
            return await SerialLink.open(ecr_side)

        terminal = ZvtTerminal(connect, config=ZvtConfig(t3=0.5))
        result = await terminal.purchase(PurchaseRequest(eur(1000), "op-1"))
        assert result.outcome is Outcome.NOT_SENT  # only the registration went out
        assert "stray bytes" in (result.detail or "")
    finally:
        await sim.close()
