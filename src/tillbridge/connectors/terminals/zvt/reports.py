"""Results of the non-payment commands: End-of-Day totals and administration answers."""

from __future__ import annotations

from dataclasses import dataclass

from tillbridge.connectors.terminals.zvt import codes
from tillbridge.connectors.terminals.zvt.flow import Flow, FlowRecord, Phase
from tillbridge.connectors.terminals.zvt.messages import StatusInformation
from tillbridge.connectors.terminals.zvt.results import money_of
from tillbridge.domain.states import Outcome
from tillbridge.money import Money
from tillbridge.payments.contract import SchemeTotal, SettlementResult


@dataclass(frozen=True, slots=True)
class AdminResult:
    """Result of a ZVT administration command (registration, status, diagnosis, log-off)."""

    ok: bool
    text: str
    result_code: str | None = None
    terminal_id: str | None = None
    terminal_status: int | None = None
    sw_version: str | None = None
    receipt: tuple[str, ...] = ()


def why(rec: FlowRecord) -> str:
    """A short reason why a flow did not end with success."""
    if rec.refused is not None:
        return f"refused: {codes.result_text(rec.refused)}"
    if rec.abort is not None:
        return f"aborted: {rec.abort.extended_text or codes.result_text(rec.abort.result_code)}"
    return str(rec.failure or "no answer")


def _all_lines(flow: Flow) -> tuple[str, ...]:
    return tuple(line for side in flow.receipts.lines.values() for line in side)


def admin_result(flow: Flow) -> AdminResult:
    rec = flow.record
    comp = rec.completion
    rc = comp.result_code if comp is not None else None
    ok = rec.refused is None and rec.abort is None and rec.failure is None and rc in (None, 0)
    code = rec.refused if rec.refused is not None else (rec.abort.result_code if rec.abort else rc)
    text = "ok" if ok else why(rec)
    if ok and comp is not None and comp.terminal_status is not None:
        text = codes.terminal_status_text(comp.terminal_status)
    return AdminResult(
        ok=ok,
        text=text,
        result_code=None if code is None else f"{code:02X}",
        terminal_id=comp.terminal_id if comp is not None else None,
        terminal_status=comp.terminal_status if comp is not None else None,
        sw_version=comp.sw_version if comp is not None else None,
        receipt=_all_lines(flow),
    )


def _settle_outcome(rec: FlowRecord, info: StatusInformation | None) -> tuple[Outcome, int | None]:
    rc = info.result_code if info is not None else None
    if rec.refused is not None:
        return Outcome.DECLINED, rec.refused
    if rc is not None and rc != codes.APPROVED:
        return Outcome.DECLINED, rc
    if rec.abort is not None:
        return Outcome.DECLINED, rec.abort.result_code
    if rec.completion is not None or (rec.status is not None and rec.phase is Phase.DONE):
        return Outcome.SUCCEEDED, codes.APPROVED
    if rec.phase is Phase.NOT_SENT:
        return Outcome.NOT_SENT, None
    # The batch may have been closed on the PT; only the PT's records can tell.
    return Outcome.UNKNOWN, rc


def settlement_result(flow: Flow, currency: str) -> SettlementResult:
    """End-of-Day: total (BMP 04) and per-scheme totals (BMP 60) of the Status-Information."""
    rec = flow.record
    info = rec.status or rec.received
    outcome, code = _settle_outcome(rec, info)
    total = money_of(info.amount, info.currency, Money(0, currency)) if info else None
    totals = info.totals if info is not None else None
    schemes: list[SchemeTotal] = []
    if totals is not None:
        cur = total.currency if total is not None else currency
        for name, s in zip(codes.SETTLEMENT_SCHEMES, totals.schemes, strict=True):
            if s.count or s.total:
                schemes.append(SchemeTotal(name, s.count, Money(s.total, cur)))
    return SettlementResult(
        outcome=outcome,
        total=total if outcome is not Outcome.DECLINED else None,
        count=sum(s.count for s in totals.schemes) if totals is not None else None,
        schemes=tuple(schemes),
        first_receipt_number=f"{totals.first_receipt:04d}" if totals is not None else None,
        last_receipt_number=f"{totals.last_receipt:04d}" if totals is not None else None,
        trace_number=info.trace if info is not None else None,
        result_code=None if code is None else f"{code:02X}",
        result_text=None if code is None else codes.result_text(code),
        receipt=_all_lines(flow),
        detail=f"{why(rec)}; ask the terminal" if outcome is Outcome.UNKNOWN else None,
    )
