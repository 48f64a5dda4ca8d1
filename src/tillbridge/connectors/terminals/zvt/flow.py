"""One ZVT command from the ECR's side: send it, then follow the PT until master rights return.

The flow records facts, not outcomes: how far the command got (:class:`Phase`), what the PT
answered, the Status-Information the ECR acknowledged, receipts, and the failure that ended it
early. :mod:`.client` turns a :class:`FlowRecord` into a contract outcome.

The one decision taken here is the acknowledgement of a Status-Information (04 0F). ``on_status``
runs *before* the ``80 00 00`` goes out; if it raises, the flow answers ``84 66 00`` instead
(spec: "goods not issued", the PT reverses the payment), keeps following the PT, and records
the exception for the caller to re-raise.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum

from tillbridge.connectors.terminals.zvt import apdu as A
from tillbridge.connectors.terminals.zvt import codes
from tillbridge.connectors.terminals.zvt.apdu import Apdu, ack, nack
from tillbridge.connectors.terminals.zvt.commands import AbortCommand
from tillbridge.connectors.terminals.zvt.config import ZvtConfig
from tillbridge.connectors.terminals.zvt.link import ZvtLink
from tillbridge.connectors.terminals.zvt.messages import (
    RECEIPT_CUSTOMER,
    AbortMessage,
    Completion,
    IntermediateStatus,
    PrintLine,
    StatusInformation,
    TextBlock,
)
from tillbridge.errors import BridgeError, LinkTimeout, NotSent, ProtocolError, TransportError
from tillbridge.payments.contract import ConnectorEvent, EventCallback, EventKind, ReceiptSide

log = logging.getLogger(__name__)

# Our negative answers: "goods not issued" (the PT reverses) and "function not possible".
GOODS_NOT_ISSUED = 0x66
NOT_POSSIBLE = codes.FUNCTION_NOT_POSSIBLE

StatusHook = Callable[[StatusInformation], Awaitable[None]]


class Phase(IntEnum):
    NOT_SENT = 0
    """The command provably did not reach the PT."""
    SENT = 1
    """The command may have reached the PT; no answer yet."""
    ACCEPTED = 2
    """The PT answered ``80 00`` and took over as master."""
    DONE = 3
    """The PT handed master rights back (Completion, Abort, or a final answer)."""


class ReceiptBook:
    """Collects receipt lines from Print Line (06 D1) and Print Text-Block (06 D3)."""

    def __init__(self, order: tuple[ReceiptSide, ...]) -> None:
        self._order = order or (ReceiptSide.MERCHANT,)
        self._index = 0
        self.lines: dict[ReceiptSide, list[str]] = {s: [] for s in ReceiptSide}

    def current_side(self) -> ReceiptSide:
        return self._order[min(self._index, len(self._order) - 1)]

    def add_print_line(self, line: PrintLine) -> list[tuple[ReceiptSide, str]]:
        side = self.current_side()
        added = [(side, text) for text in line.lines()]
        self.lines[side].extend(text for _, text in added)
        if line.is_last:
            self._index += 1
        return added

    def add_text_block(self, block: TextBlock) -> list[tuple[ReceiptSide, str]]:
        # Receipt type 01 merchant, 02 customer, 03 administration (kept with the merchant's).
        side = ReceiptSide.CUSTOMER if block.receipt_type == RECEIPT_CUSTOMER else None
        if side is None:
            side = ReceiptSide.MERCHANT if block.receipt_type is not None else self.current_side()
        self.lines[side].extend(block.lines)
        if block.receipt_type is None:
            self._index += 1
        return [(side, text) for text in block.lines]


@dataclass
class FlowRecord:
    """What happened to one command."""

    command: str
    phase: Phase = Phase.NOT_SENT
    refused: int | None = None
    """Result code of a negative answer ``84 xx`` to the command."""
    status: StatusInformation | None = None
    """The last Status-Information the ECR acknowledged."""
    received: StatusInformation | None = None
    """The last Status-Information that arrived, acknowledged or not (for its identifiers)."""
    status_rejected: bool = False
    """A Status-Information arrived but the ECR answered it negatively."""
    completion: Completion | None = None
    abort: AbortMessage | None = None
    failure: BridgeError | None = None
    """Why the flow ended before the PT handed master rights back."""
    hook_error: Exception | None = None
    """What ``on_status`` raised (the caller re-raises it)."""
    abort_answer: Apdu | None = None
    notes: list[str] = field(default_factory=list)


class Flow:
    """Runs one command on an open link. Not reusable; one :meth:`run` per instance."""

    def __init__(
        self,
        link: ZvtLink,
        config: ZvtConfig,
        *,
        on_event: EventCallback | None = None,
        on_status: StatusHook | None = None,
        after_enquiry: bool = False,
    ) -> None:
        self._link = link
        self._cfg = config
        self._on_event = on_event
        self._on_status = on_status
        self._after_enquiry = after_enquiry
        self._abort_requested = False
        self.receipts = ReceiptBook(config.print_line_order)
        self.record = FlowRecord(command="?")

    async def emit(self, kind: EventKind, text: str, *, receipt: ReceiptSide | None = None,
                   code: int | None = None) -> None:  # fmt: skip
        if self._on_event is None:
            return
        try:
            await self._on_event(ConnectorEvent(kind, text, receipt, code))
        except Exception:  # a broken listener must not abandon a payment the PT is running
            log.exception("terminal event callback failed")

    async def request_abort(self) -> bool:
        """Send Abort (06 B0) while the PT runs this command. True if it was delivered; the
        PT's answer and the command's end show whether the abort took effect."""
        if self.record.phase is not Phase.ACCEPTED:
            return False
        self._abort_requested = True
        try:
            await self._link.send_apdu(AbortCommand().to_apdu())
        except TransportError as exc:
            self.record.notes.append(f"abort request not delivered: {exc}")
            return False
        await self.emit(EventKind.STATE, "abort requested")
        return True

    async def run(self, command: Apdu, *, follow: bool = True) -> FlowRecord:
        """Send ``command`` and follow the PT. ``follow=False`` stops after the first answer
        (commands answered by ``80 00`` alone, such as Log-Off)."""
        rec = self.record
        rec.command = command.name
        try:
            await self._link.send_apdu(command)
        except TransportError as exc:
            # Only a frame the PT refused outright (NAK every time) is provably not sent.
            rec.phase = Phase.NOT_SENT if isinstance(exc, NotSent) else Phase.SENT
            rec.failure = exc
            return rec
        rec.phase = Phase.SENT
        try:
            answer = await self._link.recv_apdu(self._cfg.t3)
        except (TransportError, ProtocolError) as exc:
            rec.failure = exc
            return rec
        if answer.is_negative_answer():
            rec.refused = answer.ins
            rec.phase = Phase.DONE
            return rec
        if answer.control == A.COMPLETION:
            # Some PTs answer Status-Enquiry with the Completion straight away.
            rec.phase = Phase.ACCEPTED
            try:
                await self._handle(answer)
            except TransportError as exc:
                rec.failure = exc
            return rec
        if not answer.is_positive_answer():
            rec.failure = ProtocolError(f"expected 80 00 after {command.name}, got {answer.name}")
            return rec
        rec.phase = Phase.ACCEPTED
        await self.emit(EventKind.STATE, f"{command.name} accepted by the terminal")
        if not follow:
            rec.phase = Phase.DONE
            return rec
        await self._follow()
        return rec

    async def _follow(self) -> None:
        rec = self.record
        wait = self._cfg.t4
        while rec.phase is not Phase.DONE:
            if rec.status is not None and not self._cfg.expect_completion:
                wait = self._cfg.completion_grace
            try:
                msg = await self._link.recv_apdu(wait)
            except LinkTimeout as exc:
                if rec.status is not None and not self._cfg.expect_completion:
                    rec.notes.append("terminal sends no Completion (configured); flow ended")
                    rec.phase = Phase.DONE
                else:
                    rec.failure = exc
                return
            except (TransportError, ProtocolError) as exc:
                rec.failure = exc
                return
            wait = self._cfg.t4
            try:
                extended = await self._handle(msg)
            except (TransportError, ProtocolError) as exc:
                rec.failure = exc
                return
            if extended is not None:
                wait = extended

    async def _send(self, apdu: Apdu) -> None:
        await self._link.send_apdu(apdu)

    async def _handle(self, msg: Apdu) -> float | None:
        """Handle one PT message; return a longer wait if the PT asked for one."""
        rec = self.record
        cs = self._cfg.charset
        ctl = msg.control
        if ctl == A.INTERMEDIATE_STATUS:
            return await self._intermediate(msg)
        if ctl == A.STATUS_INFORMATION:
            await self._status_information(msg)
        elif ctl == A.PRINT_LINE:
            try:
                line = PrintLine.from_apdu(msg, cs)
            except ProtocolError as exc:
                rec.notes.append(f"unreadable print line skipped: {exc}")
            else:
                for side, text in self.receipts.add_print_line(line):
                    await self.emit(EventKind.RECEIPT_LINE, text, receipt=side)
            await self._send(ack())
        elif ctl == A.PRINT_TEXT_BLOCK:
            try:
                block = TextBlock.from_apdu(msg, cs)
            except ProtocolError as exc:
                rec.notes.append(f"unreadable text block skipped: {exc}")
            else:
                for side, text in self.receipts.add_text_block(block):
                    await self.emit(EventKind.RECEIPT_LINE, text, receipt=side)
            await self._send(ack())
        elif ctl == A.COMPLETION:
            rec.completion = Completion.from_apdu(msg, cs, after_enquiry=self._after_enquiry)
            await self._send(ack())
            rec.phase = Phase.DONE
            await self.emit(EventKind.STATE, "completed")
        elif ctl == A.ABORT:
            rec.abort = AbortMessage.from_apdu(msg, cs)
            await self._send(ack())
            rec.phase = Phase.DONE
            await self.emit(EventKind.STATE, f"aborted: {codes.result_text(rec.abort.result_code)}",
                            code=rec.abort.result_code)  # fmt: skip
        elif msg.is_answer():
            # Answers are never acknowledged. The only one expected here answers our 06 B0.
            if self._abort_requested and rec.abort_answer is None:
                rec.abort_answer = msg
            else:
                rec.notes.append(f"unexpected {msg.name} ignored")
        elif ctl == A.SET_DATE_TIME_IN_ECR:
            await self._send(ack())
        else:
            # Input/menu requests, dial-up, blocked-list queries: this ECR offers none of them.
            rec.notes.append(f"{msg.name} refused (not supported by this ECR)")
            await self._send(nack(NOT_POSSIBLE))
        return None

    async def _intermediate(self, msg: Apdu) -> float | None:
        try:
            st = IntermediateStatus.from_apdu(msg, self._cfg.charset)
        except ProtocolError as exc:
            self.record.notes.append(f"unreadable intermediate status: {exc}")
            await self._send(ack())
            return None
        text = " / ".join(st.display_lines) or codes.intermediate_text(st.status)
        kind = EventKind.PROMPT if st.status in codes.PROMPT_STATUSES else EventKind.DISPLAY
        await self.emit(kind, text, code=st.status)
        await self._send(ack())
        if st.timeout_minutes:
            return max(self._cfg.t4, st.timeout_minutes * 60.0)
        return None

    async def _status_information(self, msg: Apdu) -> None:
        rec = self.record
        try:
            info = StatusInformation.from_apdu(msg, self._cfg.charset)
        except ProtocolError as exc:
            # Accepting a result we cannot read would be a blind decision: refuse it, the PT
            # reverses, and the caller reports the outcome as unknown for recovery to settle.
            rec.status_rejected = True
            rec.notes.append(f"unreadable Status-Information refused: {exc}")
            await self._send(nack(codes.PROTOCOL_ERROR))
            return
        rec.received = info
        if self._on_status is not None:
            try:
                await self._on_status(info)
            except Exception as exc:  # whatever failed, the bridge did not accept this result
                rec.hook_error = exc
                rec.status_rejected = True
                await self._send(nack(GOODS_NOT_ISSUED))
                return
        await self._send(ack())
        rec.status = info
        rc = info.result_code if info.result_code is not None else codes.APPROVED
        await self.emit(EventKind.STATE, f"result: {codes.result_text(rc)}", code=rc)
