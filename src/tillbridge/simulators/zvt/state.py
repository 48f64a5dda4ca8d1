"""The simulated PT's memory: registration, counters, the journal of transactions.

One :class:`SimTerminal` outlives connections, like a real terminal: a payment made on one TCP
connection can be repeated (06 20) or reversed (06 30) on the next. Tests read its counters.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from tillbridge.connectors.terminals.zvt.commands import receipt_sync_tlv
from tillbridge.connectors.terminals.zvt.messages import SchemeCount, StatusInformation, Totals
from tillbridge.connectors.terminals.zvt.serial import SerialStats

from .knobs import SimulatorKnobs

Kind = Literal["purchase", "refund", "reversal", "end_of_day"]
State = Literal["approved", "declined", "reversed", "auto_reversed", "refused_by_ecr"]

AUTO_REVERSED_CODE = 0x6C


@dataclass
class SimTransaction:
    """One journal entry. ``state`` changes when a payment is reversed later."""

    kind: Kind
    amount: int
    currency: int
    trace: int
    receipt: int | None
    result_code: int
    state: State
    time: str
    date: str
    approved: bool = False
    """The card was charged (stays True when the payment is reversed later)."""
    original_trace: int | None = None
    host_text: str | None = None
    receipt_sync: bool = False
    """The ECR used receipt-number sync: echo the receipt number in TLV 1F1F."""

    @property
    def booked(self) -> bool:
        """Money moved and stays moved."""
        return self.state == "approved"

    def status_information(self, knobs: SimulatorKnobs) -> StatusInformation:
        approved = self.result_code == 0x00
        card = self.kind in ("purchase", "refund", "reversal")
        return StatusInformation(
            result_code=self.result_code,
            amount=self.amount,
            currency=self.currency,
            trace=f"{self.trace:06d}",
            original_trace=None if self.original_trace is None else f"{self.original_trace:06d}",
            time=self.time,
            date=self.date,
            payment_type=0x60 if card else None,
            masked_pan=knobs.masked_pan if card else None,
            terminal_id=knobs.terminal_id,
            vu_number=knobs.vu_number if card else None,
            auth_code=f"A{self.trace:05d}" if approved and card else None,
            additional_text=self.host_text,
            receipt_number=None if self.receipt is None else f"{self.receipt:04d}",
            card_type=knobs.card_type if card else None,
            card_name=knobs.card_name if card else None,
            tlv=(receipt_sync_tlv(self.receipt),) if self.receipt_sync else (),
        )


@dataclass
class SimTerminal:
    """State of one simulated terminal, shared by all its connections."""

    knobs: SimulatorKnobs = field(default_factory=SimulatorKnobs)
    registered: bool = False
    config_byte: int = 0x86
    text_blocks_permitted: bool = False
    journal: list[SimTransaction] = field(default_factory=list)
    batch_start: int = 0
    """Index into ``journal`` where the current end-of-day batch starts."""
    commands: list[str] = field(default_factory=list)
    """Names of all commands received, in order."""
    sessions: int = 0
    busy_rejections: int = 0
    orphaned_holds: int = 0
    """Times the ECR's link dropped while the PT waited for the card (``hold_card``); the
    card is still taken and charged when released."""
    serial_stats: list[SerialStats] = field(default_factory=list)
    card_waiting: asyncio.Event = field(default_factory=asyncio.Event)
    _trace: int = 0
    _receipt: int = 0
    _owner: object | None = None
    _card_release: asyncio.Event = field(default_factory=asyncio.Event)

    # counters -----------------------------------------------------------------------------------

    @property
    def charges(self) -> int:
        """How many times a card was charged (approved purchases, reversed later or not)."""
        return sum(1 for t in self.journal if t.kind == "purchase" and t.approved)

    @property
    def booked_purchases(self) -> list[SimTransaction]:
        return [t for t in self.journal if t.kind == "purchase" and t.booked]

    @property
    def last(self) -> SimTransaction | None:
        """The last card transaction (what Repeat Receipt repeats)."""
        for t in reversed(self.journal):
            if t.kind != "end_of_day":
                return t
        return None

    # numbering ----------------------------------------------------------------------------------

    def next_trace(self) -> int:
        self._trace = self._trace % 999_999 + 1
        return self._trace

    def next_receipt(self) -> int:
        self._receipt = self._receipt % 9_999 + 1
        return self._receipt

    def new_transaction(
        self, kind: Kind, amount: int, currency: int, result_code: int, **extra: object
    ) -> SimTransaction:
        now = datetime.now()  # a terminal prints local time
        approved = result_code == 0
        txn = SimTransaction(
            kind=kind,
            amount=amount,
            currency=currency,
            trace=self.next_trace(),
            receipt=self.next_receipt() if approved else None,
            result_code=result_code,
            state="approved" if approved else "declined",
            approved=approved,
            time=now.strftime("%H%M%S"),
            date=now.strftime("%y%m%d"),
            **extra,  # type: ignore[arg-type]
        )
        self.journal.append(txn)
        return txn

    def find_by_receipt(self, receipt: int) -> SimTransaction | None:
        for t in self.journal:
            if t.receipt == receipt and t.kind in ("purchase", "refund"):
                return t
        return None

    def auto_reverse(self, txn: SimTransaction) -> None:
        """Undo an approved transaction the ECR did not accept (the charge is not counted as
        booked any more, and Repeat Receipt reports result 6C)."""
        if txn.state == "approved":
            txn.state = "auto_reversed"
            txn.result_code = AUTO_REVERSED_CODE

    # end of day ---------------------------------------------------------------------------------

    def close_batch(self) -> tuple[int, Totals]:
        """Totals of booked purchases since the last end-of-day, then start a new batch.

        All simulated cards are one scheme (the configured card type counts as girocard when it
        is 05, else as "others"). Refunds are not netted: BMP 60 totals are unsigned.
        """
        batch = [t for t in self.journal[self.batch_start :] if t.kind == "purchase" and t.booked]
        self.batch_start = len(self.journal)
        total = sum(t.amount for t in batch)
        receipts = [t.receipt for t in batch if t.receipt is not None]
        slot = 0 if self.knobs.card_type == 0x05 else 6
        schemes = [SchemeCount(0, 0) for _ in range(7)]
        schemes[slot] = SchemeCount(min(len(batch), 255), total)
        first = min(receipts) if receipts else 0
        last = max(receipts) if receipts else 0
        return total, Totals(first, last, tuple(schemes))

    # sessions and the card ----------------------------------------------------------------------

    def acquire(self, owner: object) -> bool:
        """Take the PT for one command; False if another connection runs a command."""
        if self._owner is not None and self._owner is not owner:
            return False
        self._owner = owner
        return True

    @property
    def in_use(self) -> bool:
        """A connection is running a command on the PT right now."""
        return self._owner is not None

    def release(self, owner: object) -> None:
        if self._owner is owner:
            self._owner = None

    def release_card(self) -> None:
        """The customer inserts the card (ends a ``hold_card`` wait)."""
        self._card_release.set()

    async def wait_for_card(self) -> None:
        self.card_waiting.set()
        try:
            await self._card_release.wait()
        finally:
            self.card_waiting.clear()
            self._card_release.clear()
