"""A faithful ZVT payment-terminal simulator (TCP and serial), with fault injection.

Entry points: :func:`serve_tcp`, :func:`serve_serial` (both return a :class:`SimulatorHandle`
with ``close()``, ``port`` and the shared :class:`SimTerminal` whose journal and counters tests
read). Behaviour and faults are :class:`SimulatorKnobs` fields, passed as keyword arguments.
"""

from __future__ import annotations

from .knobs import AmountRule, SimulatorKnobs, default_rules
from .server import SimulatorHandle, serve_serial, serve_tcp
from .session import PtSession
from .state import SimTerminal, SimTransaction

__all__ = [
    "AmountRule",
    "PtSession",
    "SimTerminal",
    "SimTransaction",
    "SimulatorHandle",
    "SimulatorKnobs",
    "default_rules",
    "serve_serial",
    "serve_tcp",
]
