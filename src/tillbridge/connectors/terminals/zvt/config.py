"""Settings of one ZVT terminal connection, including the vendor deviations worth a switch."""

from __future__ import annotations

from dataclasses import dataclass

from tillbridge.connectors.terminals.zvt.bmp import Charset
from tillbridge.connectors.terminals.zvt.commands import DEFAULT_CONFIG_BYTE
from tillbridge.payments.contract import ReceiptSide


@dataclass(frozen=True, slots=True)
class ZvtConfig:
    """How :class:`~.client.ZvtTerminal` talks to one PT. Defaults follow the spec.

    Timers (seconds): ``t3`` is command -> first answer (``80 00``); ``t4`` is the wait for
    the next PT message while the PT is master (restarted by every message; a 04 FF may extend
    it). ``completion_grace`` replaces ``t4`` after an acknowledged Status-Information when
    ``expect_completion`` is off.

    Vendor deviations:

    * ``charset``: CP437 by spec; CardComplete terminals send ISO-8859-1 (``"latin-1"``).
    * ``expect_completion=False``: the terminal never sends 06 0F after a payment; the flow
      ends ``completion_grace`` seconds after the last message following the Status-Information.
    * ``permit_text_block=False``: do not offer 06 D3 at registration (terminals without it).
    * ``can_abort=False``: the terminal cannot abort from the ECR (e.g. some PAX models).
    * ``print_line_order``: which receipt comes first when the PT prints with 06 D1 lines (they
      carry no receipt type, only an end-of-receipt mark).
    * ``receipt_sync``: send TLV 1F1F with the last known receipt number (spec §4). Then the
      PT reverses a transaction the ECR did not see; run ``query_status`` on every ``unknown``
      outcome *before* the next transaction, or a payment that did succeed gets reversed.
    """

    password: str = "000000"  # noqa: S105 - the spec's factory default, not a secret
    config_byte: int = DEFAULT_CONFIG_BYTE
    currency: str = "EUR"
    service_byte: int | None = None
    permit_text_block: bool = True
    charset: Charset = "cp437"
    t3: float = 5.0
    t4: float = 180.0
    expect_completion: bool = True
    completion_grace: float = 2.0
    print_line_order: tuple[ReceiptSide, ...] = (ReceiptSide.MERCHANT, ReceiptSide.CUSTOMER)
    can_abort: bool = True
    receipt_sync: bool = False
    register: bool = True
    """Send Registration (06 00) before the first command of this client and after a PT
    answers "not registered" (6B)."""
    max_status_infos: int | None = None
    """BMP 02 in Authorization: how often the PT may repeat a Status-Information."""

    def __post_init__(self) -> None:
        if len(self.password) != 6 or not self.password.isdigit():
            raise ValueError("ZVT password must be six digits")
        if not 0 <= self.config_byte <= 0xFF:
            raise ValueError("config byte must be 0..255")
        if min(self.t3, self.t4, self.completion_grace) <= 0:
            raise ValueError("ZVT timers must be positive")
