"""The connector registry: each config ``type`` maps to its pydantic model and its factory.

Adding a protocol means one package plus one :class:`ConnectorType` entry in
:data:`CONNECTOR_TYPES`. A ``[terminals.NAME]``, ``[connectors.NAME]`` or ``[providers.NAME]``
entry whose ``type`` is not registered here is a configuration error with its line and the list
of known types (:mod:`tillbridge.app.registry` builds the config model from these entries),
never a silently ignored section.

A factory builds one :class:`~tillbridge.payments.contract.Connector` from its validated model.
It must not talk to the counterpart (the bridge must start while a terminal is switched off) and
must not raise for a secret it cannot resolve: it builds the connector with ``problem`` set, so
payments on it are refused with the reason while the rest of the bridge works.
"""

from __future__ import annotations

from typing import Final

from tillbridge.connectors.gateways.fake import FAKE_TYPE
from tillbridge.connectors.terminals.sandbox import SANDBOX_TYPE
from tillbridge.connectors.terminals.zvt.connector import ZVT_TYPE
from tillbridge.connectors.types import BuildContext, ConnectorType

#: Every connector type this build implements.
CONNECTOR_TYPES: Final[tuple[ConnectorType, ...]] = (FAKE_TYPE, ZVT_TYPE, SANDBOX_TYPE)

__all__ = ["CONNECTOR_TYPES", "BuildContext", "ConnectorType"]
