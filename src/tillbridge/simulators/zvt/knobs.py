"""Behaviour and fault switches of the ZVT terminal simulator.

Amount rules key on the last two digits of the amount in minor units (``amount % 100``), so
a test picks a behaviour by picking an amount. Defaults:

====  ==========================================================================
 51   declined by the host, result code 05
 52   customer pressed abort: result code 6C
 97   approved and booked, then the link drops before the Status-Information is sent
 98   approved, the ECR acknowledges the result, then the link drops before Completion
 99   approved, the link drops right after the Status-Information (not acknowledged)
====  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tillbridge.connectors.terminals.zvt.bmp import Charset

CutPoint = Literal["before_status", "after_status", "before_completion"]
PrintMode = Literal["auto", "lines", "blocks", "none"]
UnackedPolicy = Literal["keep", "reverse"]


@dataclass(frozen=True, slots=True)
class AmountRule:
    """What happens to an authorization or refund whose amount matches the rule."""

    result_code: int = 0x00
    cut: CutPoint | None = None
    host_text: str | None = None
    """Additional text (BMP 3C) the host sends with the result."""


def default_rules() -> dict[int, AmountRule]:
    return {
        51: AmountRule(0x05, host_text="Nicht genehmigt"),
        52: AmountRule(0x6C),
        97: AmountRule(cut="before_status"),
        98: AmountRule(cut="before_completion"),
        99: AmountRule(cut="after_status"),
    }


@dataclass(frozen=True, slots=True)
class SimulatorKnobs:
    """Everything configurable about the simulated PT. All fault knobs default to off.

    Faults:

    * ``cut_after_status``: drop the link right after every Status-Information (a clean TCP
      close: the bytes already sent still arrive, as when a terminal reboots or a cable is
      pulled after the last segment left).
    * ``send_completion=False``: never send Completion (06 0F) after a payment.
    * ``response_delay``: seconds to wait before each message the PT sends.
    * ``corrupt_crc_once`` / ``nak_once`` (serial): the first frame the PT sends has a bad
      CRC / the first frame the PT receives is answered with NAK.
    * ``busy``: answer every command with ``84 A0`` (receiver not ready).
    * ``hold_card``: at "insert card" wait until :meth:`SimTerminal.release_card` or an Abort
      (06 B0) from the ECR; the terminal's ``card_waiting`` event is set meanwhile. If the ECR's
      link drops while the card is held, the PT still waits for the card and authorizes (a
      crashed cash register does not stop the customer), then fails to report the result.
    * ``garbage``: bytes sent instead of the first answer to ``garbage_command`` (any
      command if ``None``), then the PT goes silent.
    * ``unacked_policy``: what the PT does with an approved payment whose Status-Information
      was never acknowledged: ``keep`` it (spec §4: resolve at the next transaction) or
      ``reverse`` it (spec §2.2.8 auto-reversal).
    """

    password: str = "000000"  # noqa: S105 - the spec's factory default, not a secret
    terminal_id: str = "52500038"
    vu_number: str = "SIM000000000001"
    currency: int = 978
    sw_version: str = "TILLBRIDGE-SIM 1.0"
    masked_pan: str = "672559******1234"
    card_type: int = 0x05
    card_name: str = "girocard"
    amount_rules: Mapping[int, AmountRule] = field(default_factory=default_rules)
    intermediate_statuses: tuple[int, ...] = (0x0A, 0x01, 0x04, 0x0E)
    print_mode: PrintMode = "auto"
    charset: Charset = "cp437"
    require_registration: bool = True
    send_completion: bool = True
    cut_after_status: bool = False
    response_delay: float = 0.0
    corrupt_crc_once: bool = False
    nak_once: bool = False
    busy: bool = False
    hold_card: bool = False
    garbage: bytes | None = None
    garbage_command: tuple[int, int] | None = None
    unacked_policy: UnackedPolicy = "keep"
    ack_timeout: float = 5.0
    """How long the PT waits for the ECR's answer to each message it sends."""
    status_timeout: float = 30.0
    """How long the PT waits for the answer to a Status-Information (BMP 01 default)."""
    status_repeat_delay: float = 2.0
    """Pause before repeating a Status-Information after ``84 9C`` (please wait)."""
