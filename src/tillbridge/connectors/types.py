"""What a connector registry entry is (see :mod:`tillbridge.connectors.registry`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tillbridge.clock import Clock
from tillbridge.config import PluginConfig
from tillbridge.observability.redaction import Redactor
from tillbridge.outbound import OutboundHub
from tillbridge.payments.contract import Connector, Family

Section = Literal["connectors", "terminals", "providers"]


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a connector factory may use. Nothing here talks to a counterpart by itself."""

    redactor: Redactor
    clock: Clock
    outbound: OutboundHub


@dataclass(frozen=True, slots=True)
class ConnectorType:
    """One ``type`` a section accepts: its model, its family and how to build it."""

    section: Section
    name: str
    model: type[PluginConfig]
    family: Family
    build: Callable[[str, Any, BuildContext], Connector]
    summary: str
