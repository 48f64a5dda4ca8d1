"""``ZvtTerminal``: the ZVT protocol client (ECR side) of one payment terminal.

One operation = one link: the client connects (the ECR opens and closes connections in ZVT),
registers once per client instance, runs the command and closes. A client runs one operation at
a time; a second concurrent call raises :class:`~tillbridge.errors.TerminalBusy` at once, as
does a PT that answers "receiver not ready" (``84 A0``).

The decision point is the Status-Information (04 0F): the injected ``persist_result`` hook
runs before the client acknowledges it, so the bridge has stored the result (with trace and
receipt number) before the PT may book it. Recovery (:meth:`ZvtTerminal.query_status`) asks
the PT to repeat its last Status-Information (06 20) and matches it; it never resends a sale.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from tillbridge.connectors.terminals.zvt import codes
from tillbridge.connectors.terminals.zvt import commands as C
from tillbridge.connectors.terminals.zvt.apdu import PRINT_TEXT_BLOCK, Apdu
from tillbridge.connectors.terminals.zvt.config import ZvtConfig
from tillbridge.connectors.terminals.zvt.flow import Flow, FlowRecord, StatusHook
from tillbridge.connectors.terminals.zvt.link import LinkFactory, ZvtLink
from tillbridge.connectors.terminals.zvt.messages import StatusInformation
from tillbridge.connectors.terminals.zvt.recovery import match_last
from tillbridge.connectors.terminals.zvt.reports import (
    AdminResult,
    admin_result,
    settlement_result,
    why,
)
from tillbridge.connectors.terminals.zvt.requests import (
    PurchaseRequest,
    RefundRequest,
    ReversalRequest,
    StatusQuery,
)
from tillbridge.connectors.terminals.zvt.results import (
    build_result,
    status_outcome,
    transaction_outcome,
)
from tillbridge.connectors.terminals.zvt.serial import SerialLink
from tillbridge.connectors.terminals.zvt.tcp import DEFAULT_PORT, TcpLink
from tillbridge.connectors.terminals.zvt.tlv import Tlv
from tillbridge.domain.states import OperationKind, Outcome
from tillbridge.errors import NotSent, TerminalBusy, ValidationError
from tillbridge.money import Money
from tillbridge.payments.contract import (
    Capabilities,
    ConnectorResult,
    EventCallback,
    PersistResult,
    SettlementResult,
)

MAX_ZVT_AMOUNT = 999_999_999_999


class ZvtTerminal:
    """A ZVT payment terminal (ECR side): the protocol client behind
    :class:`~.connector.ZvtConnector`.

    ``connect`` opens a fresh :class:`~.link.ZvtLink` per operation (see :meth:`tcp` and
    :meth:`serial`). ``persist_result`` is awaited with the result of every Status-Information
    *before* it is acknowledged; if it raises, the PT is told the goods were not issued (it
    reverses) and the exception propagates to the caller. It must return well within the PT's
    wait for that acknowledgement (BMP 01, 30 s by default), or the PT reverses on its own.
    ``last_receipt_number`` seeds receipt-number synchronisation (``config.receipt_sync``)
    from the bridge's records.
    """

    def __init__(
        self,
        connect: LinkFactory,
        *,
        config: ZvtConfig | None = None,
        persist_result: PersistResult | None = None,
        last_receipt_number: int | None = None,
    ) -> None:
        self._connect = connect
        self._cfg = config or ZvtConfig()
        self._persist = persist_result
        self._last_receipt = last_receipt_number
        self._registered = False
        self._busy = False
        self._closed = False
        self._active: Flow | None = None
        self.terminal_id: str | None = None

    @classmethod
    def tcp(
        cls,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        connect_timeout: float = 5.0,
        config: ZvtConfig | None = None,
        persist_result: PersistResult | None = None,
    ) -> ZvtTerminal:
        async def connect() -> ZvtLink:
            return await TcpLink.connect(host, port, connect_timeout=connect_timeout)

        return cls(connect, config=config, persist_result=persist_result)

    @classmethod
    def serial(
        cls,
        device: str,
        *,
        baudrate: int = 9600,
        stopbits: int = 2,
        t1: float = 0.2,
        t2: float = 5.0,
        config: ZvtConfig | None = None,
        persist_result: PersistResult | None = None,
    ) -> ZvtTerminal:
        """A PT on a serial device (8N2, 9600 baud by default). The port is opened per
        operation, like a TCP connection, and closed after it."""

        async def connect() -> ZvtLink:
            return await SerialLink.open(device, baudrate=baudrate, stopbits=stopbits, t1=t1, t2=t2)

        return cls(connect, config=config, persist_result=persist_result)

    @property
    def config(self) -> ZvtConfig:
        return self._cfg

    @property
    def last_receipt_number(self) -> int | None:
        """The last receipt number this client accepted (persist it for receipt sync)."""
        return self._last_receipt

    @property
    def capabilities(self) -> Capabilities:
        """What this PT offers the engine. ZVT can only repeat its *last* transaction, takes
        every input but an abort on the terminal itself, and pays refunds to a card presented
        (06 31) rather than against an earlier sale."""
        prints = bool(self._cfg.config_byte & C.CFG_PT_SENDS_PRINT_COMMANDS) and bool(
            self._cfg.config_byte & C.CFG_ECR_PRINTS_PAYMENT
        )
        return Capabilities(
            standalone_refund=True,
            reversal=True,
            query=True,
            query_last_only=True,
            cancel=self._cfg.can_abort,
            input=frozenset({"abort"}) if self._cfg.can_abort else frozenset(),
            events=True,
            settle=True,
            receipts=prints,
        )

    # sessions -----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[ZvtLink]:
        if self._closed:
            raise NotSent("the ZVT connector is closed", code="zvt_closed")
        if self._busy:
            raise TerminalBusy("this ZVT terminal is running another operation")
        self._busy = True
        try:
            link = await self._connect()
            try:
                yield link
            finally:
                await link.close()
        finally:
            self._busy = False

    async def _register_on(self, link: ZvtLink) -> FlowRecord:
        cfg = self._cfg
        tlv = (C.permitted_commands(PRINT_TEXT_BLOCK),) if cfg.permit_text_block else ()
        reg = C.Registration(
            cfg.password,
            cfg.config_byte,
            codes.currency_number(cfg.currency),
            cfg.service_byte,
            tlv,
        )
        flow = Flow(link, cfg)
        rec = await flow.run(reg.to_apdu())
        if rec.refused == codes.RECEIVER_NOT_READY:
            raise TerminalBusy("the terminal is busy (receiver not ready)")
        if rec.completion is None:
            # Nothing but the registration went out, so the caller's command was not sent.
            raise NotSent(f"registration failed: {why(rec)}", code="zvt_registration_failed")
        self._registered = True
        self.terminal_id = rec.completion.terminal_id or self.terminal_id
        return rec

    async def _command(
        self,
        link: ZvtLink,
        make: Callable[[], Apdu],
        *,
        needs_registration: bool = True,
        on_event: EventCallback | None = None,
        on_status: StatusHook | None = None,
        follow: bool = True,
        after_enquiry: bool = False,
    ) -> Flow:
        """Run one command; register first if needed and once more after a "not registered"
        refusal (safe: a refused command started nothing)."""
        if needs_registration and self._cfg.register and not self._registered:
            await self._register_on(link)
        for attempt in range(2):
            flow = Flow(
                link, self._cfg, on_event=on_event, on_status=on_status, after_enquiry=after_enquiry
            )
            self._active = flow
            try:
                rec = await flow.run(make(), follow=follow)
            finally:
                self._active = None
            if rec.refused == codes.RECEIVER_NOT_READY:
                raise TerminalBusy("the terminal is busy (receiver not ready)")
            if rec.refused == codes.NOT_REGISTERED and self._cfg.register and attempt == 0:
                self._registered = False
                await self._register_on(link)
                continue
            return flow
        raise AssertionError("unreachable")  # pragma: no cover

    # money --------------------------------------------------------------------------------------

    def _sync_tlv(self) -> tuple[Tlv, ...]:
        return (C.receipt_sync_tlv(self._last_receipt),) if self._cfg.receipt_sync else ()

    def _accepted(self, info: StatusInformation | None) -> None:
        if info is not None and status_outcome(info) is Outcome.SUCCEEDED:
            number = info.receipt_sync or info.receipt_number
            if number is not None and number.isdigit():
                self._last_receipt = int(number)

    def _hook(self, kind: OperationKind, requested: Money, ref: str) -> StatusHook | None:
        persist = self._persist
        if persist is None:
            return None

        async def on_status(info: StatusInformation) -> None:
            outcome = status_outcome(info)
            await persist(
                build_result(kind, outcome, info=info, requested=requested, reference=ref)
            )

        return on_status

    async def _money(
        self,
        kind: OperationKind,
        amount: Money,
        reference: str,
        on_event: EventCallback | None,
        make: Callable[[], Apdu],
    ) -> ConnectorResult:
        if not 0 < amount.minor <= MAX_ZVT_AMOUNT:
            raise ValidationError(f"ZVT amounts are 0.01 .. 9999999999.99, got {amount}")
        codes.currency_number(amount.currency)
        try:
            async with self._session() as link:
                flow = await self._command(
                    link, make, on_event=on_event, on_status=self._hook(kind, amount, reference)
                )
        except NotSent as exc:
            return build_result(
                kind, Outcome.NOT_SENT, requested=amount, reference=reference, detail=str(exc)
            )
        rec = flow.record
        if rec.hook_error is not None:
            raise rec.hook_error
        outcome, rc, detail = transaction_outcome(rec)
        self._accepted(rec.status)
        return build_result(
            kind,
            outcome,
            info=rec.status or rec.received,
            requested=amount,
            reference=reference,
            receipts=flow.receipts,
            result_code=rc,
            detail=detail,
        )

    async def purchase(self, req: PurchaseRequest) -> ConnectorResult:
        """Authorization (06 01). Not idempotent; an ``unknown`` result must go to recovery."""
        cur = codes.currency_number(req.amount.currency)

        def make() -> Apdu:
            return C.Authorization(
                req.amount.minor,
                cur,
                max_status_infos=self._cfg.max_status_infos,
                tlv=self._sync_tlv(),
            ).to_apdu()

        return await self._money(
            OperationKind.PURCHASE, req.amount, req.reference, req.on_event, make
        )

    async def refund(self, req: RefundRequest) -> ConnectorResult:
        """Refund (06 31) to a card presented at the PT. Not idempotent."""
        cur = codes.currency_number(req.amount.currency)

        def make() -> Apdu:
            return C.Refund(self._cfg.password, req.amount.minor, cur, self._sync_tlv()).to_apdu()

        return await self._money(
            OperationKind.REFUND, req.amount, req.reference, req.on_event, make
        )

    async def reversal(self, req: ReversalRequest) -> ConnectorResult:
        """Reversal (06 30) of a stored sale by its receipt number (and amount). A second
        reversal of the same sale is declined by the PT (``B4`` already reversed)."""
        if req.receipt_number is None or not req.receipt_number.isdigit():
            raise ValidationError("a ZVT reversal needs the original receipt number")
        receipt = int(req.receipt_number)
        cur = codes.currency_number(req.amount.currency)

        def make() -> Apdu:
            return C.Reversal(
                self._cfg.password, receipt, req.amount.minor, cur, self._sync_tlv()
            ).to_apdu()

        return await self._money(
            OperationKind.REVERSAL, req.amount, req.reference, req.on_event, make
        )

    async def cancel(self) -> bool:
        """Send Abort (06 B0) to the running transaction, if any and if the PT supports it."""
        flow = self._active
        if flow is None or not self._cfg.can_abort:
            return False
        return await flow.request_abort()

    # recovery -----------------------------------------------------------------------------------

    async def repeat_last(self) -> tuple[FlowRecord, StatusInformation | None]:
        """Repeat Receipt (06 20, service byte 03): the PT's last Status-Information, no
        printout. The repeated 04 0F is acknowledged at once: it decides nothing."""
        async with self._session() as link:
            flow = await self._command(
                link,
                lambda: C.RepeatReceipt(self._cfg.password).to_apdu(),
                needs_registration=False,
            )
        return flow.record, flow.record.status

    async def query_status(self, query: StatusQuery) -> ConnectorResult:
        """Resolve an ``unknown`` outcome from the PT's last transaction (see
        :func:`~.recovery.match_last`). Never resends; idempotent. If the PT cannot be asked
        the answer stays ``unknown``, never ``not_sent``: the original may still have run."""
        try:
            rec, info = await self.repeat_last()
        except NotSent as exc:
            return build_result(
                query.kind,
                Outcome.UNKNOWN,
                requested=query.amount,
                reference=query.reference,
                detail=f"cannot ask the terminal: {exc}",
            )
        if info is None:
            return build_result(
                query.kind,
                Outcome.UNKNOWN,
                requested=query.amount,
                reference=query.reference,
                detail=f"the terminal did not repeat its last transaction: {why(rec)}",
            )
        match = match_last(query, info)
        if match.matched and match.outcome is Outcome.SUCCEEDED:
            self._accepted(info)
        return build_result(
            query.kind,
            match.outcome,
            info=info if match.matched else None,
            requested=query.amount,
            reference=query.reference,
            detail=match.reason,
        )

    # end of day ---------------------------------------------------------------------------------

    async def settle(self) -> SettlementResult:
        """End-of-Day (06 50) with totals from BMP 60. Not idempotent on the PT."""
        cfg = self._cfg
        try:
            async with self._session() as link:
                flow = await self._command(
                    link, lambda: C.EndOfDay(cfg.password, self._sync_tlv()).to_apdu()
                )
        except NotSent as exc:
            return SettlementResult(Outcome.NOT_SENT, detail=str(exc))
        return settlement_result(flow, cfg.currency)

    # administration -----------------------------------------------------------------------------

    async def _admin(
        self, make: Callable[[], Apdu], *, needs_registration: bool, follow: bool = True,
        after_enquiry: bool = False,
    ) -> AdminResult:  # fmt: skip
        try:
            async with self._session() as link:
                flow = await self._command(
                    link,
                    make,
                    needs_registration=needs_registration,
                    follow=follow,
                    after_enquiry=after_enquiry,
                )
        except NotSent as exc:
            return AdminResult(False, str(exc))
        return admin_result(flow)

    async def register(self) -> AdminResult:
        """Registration (06 00) now, with this client's config byte and permitted commands."""
        try:
            async with self._session() as link:
                rec = await self._register_on(link)
        except NotSent as exc:
            return AdminResult(False, str(exc))
        comp = rec.completion
        return AdminResult(
            True,
            "registered",
            terminal_id=comp.terminal_id if comp else None,
            result_code="00",
        )

    async def status_enquiry(self) -> AdminResult:
        """Status-Enquiry (05 01): terminal status byte and software version."""
        return await self._admin(
            lambda: C.StatusEnquiry(self._cfg.password).to_apdu(),
            needs_registration=False,
            after_enquiry=True,
        )

    async def diagnosis(self) -> AdminResult:
        """Diagnosis (06 70)."""
        return await self._admin(lambda: C.Diagnosis().to_apdu(), needs_registration=True)

    async def log_off(self) -> AdminResult:
        """Log-Off (06 02): the PT forgets the registration; the next command registers again."""
        result = await self._admin(
            lambda: C.LogOff().to_apdu(), needs_registration=False, follow=False
        )
        self._registered = False
        return result

    async def close(self) -> None:
        """Refuse further operations. Links are per operation, so nothing stays open."""
        self._closed = True
