"""Builds the terminal engine of a runtime and hooks it into the payment service.

For every ``[terminals.<id>]`` of the merchant config: a connector handle, an entry in the
runtime's connector map (so ``<id>`` is a valid ``connector`` for ``POST /v1/payments`` and for
an ERP register's terminal), the engine as the payment service's delegate for ``<id>``, and the
engine's listener that turns state changes of terminal payments into events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from tillbridge.errors import ConfigError
from tillbridge.terminals.engine import TerminalEngine
from tillbridge.terminals.handles import TerminalPaymentConnector

if TYPE_CHECKING:
    from tillbridge.runtime import Runtime

log = structlog.get_logger("tillbridge.terminals")


def build_terminal_engine(rt: Runtime) -> TerminalEngine:
    terminals = dict(rt.config.terminals)
    passwords: dict[str, str] = {}
    problems: dict[str, str] = {}
    for name, t in terminals.items():
        if t.password is None:
            continue
        try:
            passwords[name] = t.password.resolve()
        except ConfigError as exc:
            # Other commands (resolve, jobs, db) must still work without the terminal's secret;
            # the terminal itself refuses payments and says why.
            problems[name] = exc.message
    engine = TerminalEngine(rt.db, rt.payments, terminals, passwords=passwords)
    for name, h in engine.handles.items():
        h.problem = problems.get(name)
        if name in rt.connectors:
            log.warning("terminals.name_shadows_connector", terminal=name)
        rt.connectors[name] = TerminalPaymentConnector(name, h.connector.capabilities.can_abort)
        rt.payments.delegates[name] = engine
    rt.payments.listeners.append(engine.on_payment_change)
    return engine
