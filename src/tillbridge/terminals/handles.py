"""Building terminal connectors from the merchant config (``[terminals.<id>]``).

One :class:`TerminalHandle` per configured terminal: its connector (ZVT over TCP or serial, or
``fake``: a ZVT terminal simulated in-process over an in-memory link, for trying the bridge
without hardware), how to ask it for its last transaction (the recovery probe), and what the
API shows about it. Explicit registry, built at runtime construction; nothing at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tillbridge.config import Terminal
from tillbridge.errors import BridgeError, NotSent
from tillbridge.gateways.contract import Capabilities, ConnectorResult, OperationRequest
from tillbridge.simulators.zvt import PtSession, SimTerminal, SimulatorKnobs
from tillbridge.terminals.contract import PersistResult, TerminalConnector
from tillbridge.terminals.zvt import ZvtConfig, ZvtLink, ZvtTerminal, memory_link_pair
from tillbridge.terminals.zvt import codes as zvt_codes
from tillbridge.terminals.zvt.flow import Phase


@dataclass(frozen=True, slots=True)
class Probe:
    """What the terminal says its last transaction was (ZVT: Repeat Receipt, no printout).

    ``reached`` False: the terminal could not be asked (nothing is known). ``trace`` None with
    ``reached`` True: the terminal has no last transaction to repeat.
    """

    reached: bool
    trace: str | None = None
    receipt: str | None = None
    detail: str | None = None


ProbeFn = Callable[[], Awaitable[Probe]]


@dataclass
class TerminalHandle:
    """One configured terminal and its connector."""

    name: str
    protocol: str
    link: str
    currency: str
    charset: str
    connector: TerminalConnector
    probe: ProbeFn | None = None
    store: str | None = None
    simulator: SimTerminal | None = None
    """The in-process simulated terminal of a ``fake`` terminal (tests and demos read it)."""
    problem: str | None = None
    """Why this terminal cannot be used (a secret that could not be resolved)."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def describe(self) -> dict[str, Any]:
        caps = self.connector.capabilities
        return {
            "id": self.name,
            "protocol": self.protocol,
            "link": self.link,
            "store": self.store,
            "problem": self.problem,
            "currency": self.currency,
            "charset": self.charset,
            "capabilities": {
                "abort": caps.can_abort,
                "refund": caps.can_refund,
                "status_query": "last_transaction" if caps.can_query_last else "by_reference",
                "end_of_day": caps.can_settle,
                "receipts": caps.delivers_receipts,
                "input": [],  # ZVT takes every input on the terminal itself
            },
        }

    async def close(self) -> None:
        await self.connector.close()
        for task in list(self._tasks):
            task.cancel()


def _zvt_probe(zvt: ZvtTerminal) -> ProbeFn:
    async def probe() -> Probe:
        try:
            rec, info = await zvt.repeat_last()
        except NotSent as exc:
            return Probe(False, detail=str(exc))
        if info is not None:
            return Probe(True, info.trace, info.receipt_number)
        if rec.abort is not None or rec.refused is not None:
            # The terminal answered and has nothing to repeat: a fresh terminal.
            return Probe(True, detail="the terminal has no last transaction")
        reached = rec.phase is not Phase.NOT_SENT and rec.failure is None
        return Probe(reached, detail=str(rec.failure or "no answer"))

    return probe


def build_handle(
    name: str, t: Terminal, persist: PersistResult, *, password: str | None = None
) -> TerminalHandle:
    """The handle of terminal ``name``. ``password`` is the resolved ``t.password`` (the
    ZVT factory default ``000000`` when the config names none)."""
    cfg = ZvtConfig(password=password or "000000", currency=t.currency, charset=t.charset)
    if t.protocol == "fake":
        sim = SimTerminal(SimulatorKnobs(currency=zvt_codes.currency_number(t.currency)))
        tasks: set[asyncio.Task[None]] = set()

        async def connect() -> ZvtLink:
            ecr, pt = memory_link_pair()
            task = asyncio.get_running_loop().create_task(PtSession(sim, pt).run())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            return ecr

        zvt = ZvtTerminal(connect, config=cfg, persist_result=persist)
        return TerminalHandle(
            name, "fake", "memory (simulated ZVT terminal)", t.currency, t.charset, zvt,
            _zvt_probe(zvt), t.store, simulator=sim, _tasks=tasks,
        )  # fmt: skip
    if t.host is not None:
        zvt = ZvtTerminal.tcp(t.host, t.port, config=cfg, persist_result=persist)
        link = f"tcp://{t.host}:{t.port}"
    else:
        assert t.serial is not None  # the config validator demands exactly one
        zvt = ZvtTerminal.serial(t.serial, config=cfg, persist_result=persist)
        link = f"serial:{t.serial}"
    return TerminalHandle(name, "zvt", link, t.currency, t.charset, zvt, _zvt_probe(zvt), t.store)


class TerminalPaymentConnector:
    """The entry of a terminal in the runtime's connector map.

    It makes a terminal id a valid ``connector`` for ``POST /v1/payments`` and for ERP sources
    (a register's terminal). It never moves money itself: the payment service hands terminal
    payments to the terminal engine (its delegate), which runs them on jobs keyed by terminal.
    """

    def __init__(self, name: str, can_abort: bool) -> None:
        self.name = name
        self.capabilities = Capabilities(refund=False, partial_refund=False, cancel=can_abort)

    async def _refuse(self, req: OperationRequest) -> ConnectorResult:
        raise BridgeError(f"terminal {self.name}: payments run on the terminal engine")

    purchase = refund = cancel = _refuse

    async def query(self, req: OperationRequest) -> ConnectorResult:
        raise BridgeError(f"terminal {self.name}: recovery runs on the terminal engine")
