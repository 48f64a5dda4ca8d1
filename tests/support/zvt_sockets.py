"""Helpers shared by the ZVT integration tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tillbridge.connectors.terminals.zvt import ZvtConfig, ZvtTerminal
from tillbridge.money import Money
from tillbridge.simulators.zvt import SimulatorHandle

SimFactory = Callable[..., Awaitable[SimulatorHandle]]


def client(handle: SimulatorHandle, **cfg: Any) -> ZvtTerminal:
    """A ZVT client for the simulator behind ``handle``; ``cfg`` are ZvtConfig fields."""
    assert handle.port is not None
    persist = cfg.pop("persist_result", None)
    return ZvtTerminal.tcp(
        "127.0.0.1", handle.port, config=ZvtConfig(**cfg), persist_result=persist
    )


def eur(minor: int) -> Money:
    return Money(minor, "EUR")
