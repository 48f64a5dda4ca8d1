"""ZVT (ZVT-700) card terminals: wire codec, TCP and serial links, flows and the connector.

Start with :class:`ZvtTerminal` (``ZvtTerminal.tcp(host)`` / ``ZvtTerminal.serial(device)``)
and :class:`ZvtConfig`. Lower layers: :mod:`.apdu`, :mod:`.bmp`, :mod:`.tlv`,
:mod:`.commands`, :mod:`.messages`, :mod:`.serial_frame`, :mod:`.tcp`, :mod:`.serial`.
"""

from __future__ import annotations

from .client import ZvtTerminal
from .config import ZvtConfig
from .link import LinkFactory, ZvtLink, memory_link_pair
from .reports import AdminResult

__all__ = ["AdminResult", "LinkFactory", "ZvtConfig", "ZvtLink", "ZvtTerminal", "memory_link_pair"]
