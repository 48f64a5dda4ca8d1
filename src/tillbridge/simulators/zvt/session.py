"""One connection to the simulated PT: read ECR commands, play the terminal's side of each flow.

The PT side of every flow: answer the command (``80 00`` or ``84 xx``), then as master send
intermediate status, Status-Information, receipts and Completion/Abort, waiting for the ECR's
answer to each. Faults from :class:`~.knobs.SimulatorKnobs` are injected at the points a real
terminal or cable fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from tillbridge.connectors.terminals.zvt import apdu as A
from tillbridge.connectors.terminals.zvt import codes
from tillbridge.connectors.terminals.zvt import commands as C
from tillbridge.connectors.terminals.zvt.apdu import Apdu, ack, nack
from tillbridge.connectors.terminals.zvt.link import ZvtLink
from tillbridge.connectors.terminals.zvt.messages import (
    LAST_LINE_ATTRIBUTE,
    RECEIPT_ADMIN,
    RECEIPT_CUSTOMER,
    RECEIPT_MERCHANT,
    AbortMessage,
    Completion,
    IntermediateStatus,
    PrintLine,
    StatusInformation,
    TextBlock,
)
from tillbridge.connectors.terminals.zvt.tlv import Tlv
from tillbridge.errors import LinkTimeout, ProtocolError, TransportError

from .knobs import AmountRule, SimulatorKnobs
from .receipts import receipt_lines
from .state import Kind, SimTerminal, SimTransaction

log = logging.getLogger(__name__)

RawWrite = Callable[[bytes], Awaitable[None]]


class _Cut(Exception):
    """The simulated cable is pulled: close the link without another byte."""


class PtSession:
    """Serves one link until the ECR goes away. ``raw_write`` (optional) sends bytes that are
    not APDUs, for the garbage fault."""

    def __init__(
        self, terminal: SimTerminal, link: ZvtLink, *, raw_write: RawWrite | None = None
    ) -> None:
        self.t = terminal
        self.link = link
        self._raw_write = raw_write
        self._abort_requested = False

    @property
    def k(self) -> SimulatorKnobs:
        # Read on every use: tests may change knobs of a running simulator between commands.
        return self.t.knobs

    async def run(self) -> None:
        self.t.sessions += 1
        try:
            while True:
                try:
                    cmd = await self.link.recv_apdu(None)
                except (TransportError, ProtocolError):
                    return
                if cmd.is_answer():
                    continue  # a stray answer: nothing to do
                if not await self._serve(cmd):
                    return
        finally:
            await self.link.close()

    async def _serve(self, cmd: Apdu) -> bool:
        """Run one command; False when the connection must end."""
        self.t.commands.append(cmd.name)
        k = self.k
        if k.garbage is not None and k.garbage_command in (None, cmd.control):
            if self._raw_write is not None:
                await self._raw_write(k.garbage)
            return True
        if k.busy or not self.t.acquire(self):
            self.t.busy_rejections += 1
            await self.link.send_apdu(nack(codes.RECEIVER_NOT_READY))
            return True
        try:
            await self._dispatch(cmd)
        except _Cut:
            await self.link.close()
            return False
        except (TransportError, ProtocolError) as exc:
            log.info("simulated PT: ECR link ended during %s: %s", cmd.name, exc)
            return False
        finally:
            self.t.release(self)
        return True

    async def _dispatch(self, cmd: Apdu) -> None:
        handlers = {
            A.REGISTRATION: self._registration,
            A.AUTHORIZATION: self._authorization,
            A.REFUND: self._refund,
            A.REVERSAL: self._reversal,
            A.END_OF_DAY: self._end_of_day,
            A.REPEAT_RECEIPT: self._repeat_receipt,
            A.STATUS_ENQUIRY: self._status_enquiry,
            A.DIAGNOSIS: self._diagnosis,
            A.LOG_OFF: self._log_off,
            A.ABORT_COMMAND: self._idle_abort,
        }
        handler = handlers.get(cmd.control)
        if handler is None:
            await self.link.send_apdu(nack(codes.FUNCTION_NOT_POSSIBLE))
            return
        try:
            parsed = C.decode_command(cmd)
        except ProtocolError:
            await self.link.send_apdu(nack(codes.PROTOCOL_ERROR))
            return
        await handler(parsed)

    # sending as master --------------------------------------------------------------------------

    async def _send(self, apdu: Apdu) -> None:
        if self.k.response_delay:
            await asyncio.sleep(self.k.response_delay)
        await self.link.send_apdu(apdu)

    async def _answer(self, wait: float) -> Apdu:
        """Wait for the ECR's answer to the message just sent. An Abort (06 B0) arriving now
        is noted and answered; other commands are refused: the PT is master."""
        while True:
            msg = await self.link.recv_apdu(wait)
            if msg.is_answer():
                return msg
            if msg.control == A.ABORT_COMMAND:
                self._abort_requested = True
                await self.link.send_apdu(ack())
            else:
                await self.link.send_apdu(nack(codes.RECEIVER_NOT_READY))

    async def _send_acked(self, apdu: Apdu) -> Apdu:
        await self._send(apdu)
        return await self._answer(self.k.ack_timeout)

    async def _accept(self) -> None:
        await self.link.send_apdu(ack())

    async def _intermediate(self, status: int) -> None:
        if not self.t.config_byte & C.CFG_INTERMEDIATE_STATUS:
            return
        text = codes.intermediate_text(status).upper()
        await self._send_acked(IntermediateStatus(status, None, (text,)).to_apdu(self.k.charset))

    async def _print(self, txn: SimTransaction, kinds: tuple[int, ...]) -> None:
        mode = self.k.print_mode
        if mode == "none" or not self.t.config_byte & C.CFG_PT_SENDS_PRINT_COMMANDS:
            return
        blocks = mode == "blocks" or (mode == "auto" and self.t.text_blocks_permitted)
        cs = self.k.charset
        for rtype in kinds:
            lines = receipt_lines(txn, rtype, self.k)
            if blocks:
                await self._send_acked(TextBlock(rtype, tuple(lines)).to_apdu(cs))
                continue
            for i, line in enumerate(lines):
                attr = LAST_LINE_ATTRIBUTE if i == len(lines) - 1 else 0x00
                await self._send_acked(PrintLine(attr, line).to_apdu(cs))

    async def _finish(self, result_code: int) -> None:
        if result_code == codes.APPROVED:
            if self.k.send_completion:
                done = Completion(terminal_id=self.k.terminal_id, currency=self.k.currency)
                await self._send_acked(done.to_apdu(self.k.charset))
        else:
            await self._send_acked(AbortMessage(result_code).to_apdu(self.k.charset))

    # payments -----------------------------------------------------------------------------------

    async def _status(self, txn: SimTransaction, cut: bool) -> bool:
        """Send the Status-Information; True if the ECR accepted it. Handles ``84 9C`` repeats,
        refusals and silence the way the spec prescribes (reverse), or per ``unacked_policy``."""
        info = txn.status_information(self.k).to_apdu(self.k.charset)
        # "Please wait" (84 9C) repeats are capped like a PT without BMP 02 would cap them.
        for _ in range(10):
            await self._send(info)
            if cut:
                if self.k.unacked_policy == "reverse":
                    self.t.auto_reverse(txn)
                raise _Cut
            try:
                answer = await self._answer(self.k.status_timeout)
            except LinkTimeout:
                if self.k.unacked_policy == "reverse":
                    self.t.auto_reverse(txn)
                raise
            if answer.ins == codes.PLEASE_WAIT and answer.cls == 0x84:
                await asyncio.sleep(self.k.status_repeat_delay)
                continue
            if answer.is_positive_answer():
                return True
            break
        # Goods not issued (or the ECR kept asking to wait): the PT reverses the payment.
        self.t.auto_reverse(txn)
        txn.state = "refused_by_ecr" if txn.state == "auto_reversed" else txn.state
        return False

    async def _card_payment(
        self, kind: Kind, amount: int, currency: int | None, items: tuple[Tlv, ...]
    ) -> None:
        k = self.k
        if k.require_registration and not self.t.registered:
            await self.link.send_apdu(nack(codes.NOT_REGISTERED))
            return
        if currency is not None and currency != k.currency:
            await self.link.send_apdu(nack(codes.WRONG_CURRENCY))
            return
        await self._accept()
        rule = k.amount_rules.get(amount % 100, AmountRule())
        self._abort_requested = False
        result = rule.result_code
        ecr_gone = False
        for status in k.intermediate_statuses:
            await self._intermediate(status)
            if status == 0x0A and k.hold_card:
                ecr_gone = not await self._hold_card()
            if self._abort_requested or ecr_gone:
                result = codes.ABORTED if self._abort_requested else result
                break
        txn = self.t.new_transaction(
            kind,
            amount,
            k.currency,
            result,
            host_text=rule.host_text if result else None,
            receipt_sync=C.receipt_sync_value(items)[0],
        )
        if rule.cut == "before_status" or ecr_gone:
            if k.unacked_policy == "reverse":
                self.t.auto_reverse(txn)
            raise _Cut
        cut_now = k.cut_after_status or rule.cut == "after_status"
        accepted = await self._status(txn, cut_now)
        if not accepted:
            await self._print(txn, (RECEIPT_MERCHANT,))
            await self._finish(codes.ABORTED)
            return
        await self._print(txn, (RECEIPT_MERCHANT, RECEIPT_CUSTOMER))
        if rule.cut == "before_completion":
            raise _Cut
        await self._finish(txn.result_code)

    async def _hold_card(self) -> bool:
        """Wait for the card, or for an Abort (06 B0) from the ECR, whichever comes first.
        False if the ECR's link dropped meanwhile (the card was still taken)."""
        card = asyncio.ensure_future(self.t.wait_for_card())
        command = asyncio.ensure_future(self.link.recv_apdu(None))
        try:
            done, _ = await asyncio.wait({card, command}, return_when=asyncio.FIRST_COMPLETED)
            if command in done and command.exception() is not None:
                # The ECR went away (crash, cable). The customer still inserts the card and the
                # PT still authorizes; it just cannot report the result (see unacked_policy).
                self.t.orphaned_holds += 1
                await card
                return False
            if command in done:
                msg = command.result()
                if msg.control == A.ABORT_COMMAND:
                    self._abort_requested = True
                    await self.link.send_apdu(ack())
                elif not msg.is_answer():
                    await self.link.send_apdu(nack(codes.RECEIVER_NOT_READY))
            return True
        finally:
            for task in (card, command):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _authorization(self, cmd: C.Command) -> None:
        assert isinstance(cmd, C.Authorization)
        self._receipt_sync(cmd.tlv)
        await self._card_payment("purchase", cmd.amount, cmd.currency, cmd.tlv)

    async def _refund(self, cmd: C.Command) -> None:
        assert isinstance(cmd, C.Refund)
        self._receipt_sync(cmd.tlv)
        await self._card_payment("refund", cmd.amount, cmd.currency, cmd.tlv)

    def _receipt_sync(self, items: tuple[Tlv, ...]) -> None:
        """Spec §4: the ECR's last known receipt number one below ours means the ECR never saw
        our last transaction, so it is reversed now."""
        present, number = C.receipt_sync_value(items)
        last = self.t.last
        if not present or number is None or last is None or last.receipt is None:
            return
        if number == last.receipt - 1:
            self.t.auto_reverse(last)

    async def _reversal(self, cmd: C.Command) -> None:
        assert isinstance(cmd, C.Reversal)
        if self.k.require_registration and not self.t.registered:
            await self.link.send_apdu(nack(codes.NOT_REGISTERED))
            return
        self._receipt_sync(cmd.tlv)
        await self._accept()
        original = self.t.find_by_receipt(cmd.receipt_number)
        code = codes.APPROVED
        if original is None or (cmd.amount is not None and cmd.amount != original.amount):
            code = codes.REVERSAL_NOT_POSSIBLE
        elif original.state != "approved":
            code = codes.ALREADY_REVERSED
        amount = original.amount if original is not None else (cmd.amount or 0)
        txn = self.t.new_transaction(
            "reversal",
            amount,
            self.k.currency,
            code,
            original_trace=original.trace if original is not None else None,
        )
        if await self._status(txn, cut=False):
            if code == codes.APPROVED and original is not None:
                original.state = "reversed"
            await self._print(txn, (RECEIPT_MERCHANT, RECEIPT_CUSTOMER))
            await self._finish(code)
        else:
            await self._finish(codes.ABORTED)

    async def _end_of_day(self, cmd: C.Command) -> None:
        if self.k.require_registration and not self.t.registered:
            await self.link.send_apdu(nack(codes.NOT_REGISTERED))
            return
        await self._accept()
        total, totals = self.t.close_batch()
        txn = self.t.new_transaction("end_of_day", total, self.k.currency, codes.APPROVED)
        info = StatusInformation(
            result_code=0,
            amount=total,
            currency=self.k.currency,
            trace=f"{txn.trace:06d}",
            time=txn.time,
            date=txn.date,
            terminal_id=self.k.terminal_id,
            totals=totals,
        )
        await self._send_acked(info.to_apdu(self.k.charset))
        await self._print(txn, (RECEIPT_ADMIN,))
        await self._finish(codes.APPROVED)

    # administration -----------------------------------------------------------------------------

    async def _registration(self, cmd: C.Command) -> None:
        assert isinstance(cmd, C.Registration)
        await self._accept()
        if cmd.currency is not None and cmd.currency != self.k.currency:
            await self._send_acked(AbortMessage(codes.WRONG_CURRENCY).to_apdu())
            return
        self.t.registered = True
        self.t.config_byte = cmd.config_byte
        self.t.text_blocks_permitted = cmd.permits_text_block()
        done = Completion(
            status_byte=0x00, terminal_id=self.k.terminal_id, currency=self.k.currency
        )
        await self._send_acked(done.to_apdu(self.k.charset))

    async def _repeat_receipt(self, cmd: C.Command) -> None:
        assert isinstance(cmd, C.RepeatReceipt)
        await self._accept()
        last = self.t.last
        if last is None:
            await self._send_acked(AbortMessage(codes.FUNCTION_NOT_POSSIBLE).to_apdu())
            return
        service = cmd.service_byte or 0
        if service & C.REPEAT_STATUS_INFO:
            await self._send_acked(last.status_information(self.k).to_apdu(self.k.charset))
        if not service & C.REPEAT_NO_PRINTOUT:
            await self._print(last, (RECEIPT_CUSTOMER,))
        await self._send_acked(Completion(terminal_id=self.k.terminal_id).to_apdu())

    async def _status_enquiry(self, cmd: C.Command) -> None:
        await self._accept()
        done = Completion(
            sw_version=self.k.sw_version, terminal_status=0x00, terminal_id=self.k.terminal_id
        )
        await self._send_acked(done.to_apdu(self.k.charset))

    async def _diagnosis(self, cmd: C.Command) -> None:
        await self._accept()
        await self._send_acked(Completion(terminal_id=self.k.terminal_id).to_apdu())

    async def _log_off(self, cmd: C.Command) -> None:
        self.t.registered = False
        self.t.config_byte = 0x86
        self.t.text_blocks_permitted = False
        await self._accept()

    async def _idle_abort(self, cmd: C.Command) -> None:
        # Nothing runs on this connection: there is nothing to abort, which is not an error.
        await self._accept()
