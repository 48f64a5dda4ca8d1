"""From ZVT facts to contract results: outcome rules and :class:`ConnectorResult` building.

Outcome rules for a money command (purchase, refund, reversal), in order:

1. the command provably never reached the PT -> ``not_sent``;
2. the PT refused the command (``84 xx``) -> ``declined`` (busy is raised by the client);
3. an acknowledged Status-Information with a result code other than 00 -> ``declined``;
4. an acknowledged approval, then Completion -> ``succeeded``; then silence until T4 on a
   healthy link (or the configured end for PTs without Completion) -> ``succeeded``, because
   the acknowledgement is the decision (spec §2.2.8); then a lost link, garbage or an Abort ->
   ``unknown``: the ECR cannot tell whether the PT received its acknowledgement or reversed;
5. no Status-Information: Abort -> ``declined``; Completion -> its result code decides;
6. anything else after sending -> ``unknown``. Never resend; ask with ``query_status``.
"""

from __future__ import annotations

from tillbridge.connectors.terminals.zvt import codes
from tillbridge.connectors.terminals.zvt.flow import FlowRecord, Phase, ReceiptBook
from tillbridge.connectors.terminals.zvt.messages import StatusInformation
from tillbridge.domain.states import OperationKind, Outcome
from tillbridge.errors import LinkTimeout, MoneyError
from tillbridge.money import Money
from tillbridge.payments.contract import ConnectorResult, ReceiptSide

_RECOVER = "recover with query_status; never resend"


def transaction_outcome(rec: FlowRecord) -> tuple[Outcome, int | None, str | None]:
    """``(outcome, result code, detail)`` of a money command's flow (see module docstring)."""
    if rec.phase is Phase.NOT_SENT:
        return Outcome.NOT_SENT, None, f"not sent: {rec.failure}"
    if rec.refused is not None:
        return Outcome.DECLINED, rec.refused, "the terminal refused the command"
    if rec.status is not None:
        rc = rec.status.result_code if rec.status.result_code is not None else codes.APPROVED
        if rc != codes.APPROVED:
            return Outcome.DECLINED, rc, None
        if rec.completion is not None:
            return Outcome.SUCCEEDED, rc, None
        if rec.abort is not None:
            text = codes.result_text(rec.abort.result_code)
            return (
                Outcome.UNKNOWN,
                rc,
                f"approved and acknowledged, then the terminal aborted ({text}); {_RECOVER}",
            )
        if rec.phase is Phase.DONE:
            return Outcome.SUCCEEDED, rc, "; ".join(rec.notes) or None
        if isinstance(rec.failure, LinkTimeout):
            return (
                Outcome.SUCCEEDED,
                rc,
                "no Completion before T4; the acknowledged Status-Information decides",
            )
        return (
            Outcome.UNKNOWN,
            rc,
            f"approved and acknowledged, but the link failed before Completion "
            f"({rec.failure}); the terminal may not have received the acknowledgement; {_RECOVER}",
        )
    if rec.abort is not None:
        text = rec.abort.extended_text or codes.result_text(rec.abort.result_code)
        if rec.status_rejected:
            text = f"{text} (after the bridge refused the result)"
        return Outcome.DECLINED, rec.abort.result_code, text
    if rec.status_rejected:
        return Outcome.UNKNOWN, None, f"the bridge refused the terminal's result; {_RECOVER}"
    if rec.completion is not None:
        rc = rec.completion.result_code if rec.completion.result_code is not None else 0
        outcome = Outcome.SUCCEEDED if rc == codes.APPROVED else Outcome.DECLINED
        return outcome, rc, "Completion without Status-Information"
    return Outcome.UNKNOWN, None, f"{rec.failure or 'flow ended early'}; {_RECOVER}"


def money_of(minor: int | None, currency: int | None, fallback: Money | None) -> Money | None:
    """The amount a PT reported, in the PT's currency if it named one, else ``fallback``'s."""
    if minor is None:
        return fallback
    alpha = fallback.currency if fallback is not None else "EUR"
    if currency is not None:
        try:
            alpha = codes.currency_alpha(currency)
        except MoneyError:
            return fallback
    return Money(minor, alpha)


def build_result(
    kind: OperationKind,
    outcome: Outcome,
    *,
    info: StatusInformation | None = None,
    requested: Money | None = None,
    reference: str | None = None,
    receipts: ReceiptBook | None = None,
    result_code: int | None = None,
    detail: str | None = None,
) -> ConnectorResult:
    """A :class:`ConnectorResult` from what the PT reported (``info``) and what was asked."""
    if result_code is None and info is not None:
        result_code = info.result_code
    text = codes.result_text(result_code) if result_code is not None else None
    if info is not None and info.additional_text and outcome is Outcome.DECLINED:
        # Host messages (BMP 3C) are meant for the operator: show them verbatim.
        text = f"{text}: {info.additional_text}" if text else info.additional_text
    customer: tuple[str, ...] = ()
    merchant: tuple[str, ...] = ()
    if receipts is not None:
        customer = tuple(receipts.lines[ReceiptSide.CUSTOMER])
        merchant = tuple(receipts.lines[ReceiptSide.MERCHANT])
    card_type = info.card_type if info is not None else None
    return ConnectorResult(
        outcome=outcome,
        kind=kind,
        amount=money_of(info.amount, info.currency, requested) if info else requested,
        reference=reference,
        masked_pan=info.masked_pan if info else None,
        card_type=codes.card_type_name(card_type) if card_type is not None else None,
        card_name=info.card_name if info else None,
        trace_number=info.trace if info else None,
        receipt_number=info.receipt_number if info else None,
        terminal_id=info.terminal_id if info else None,
        vu_number=info.vu_number if info else None,
        auth_code=info.auth_code if info else None,
        result_code=None if result_code is None else f"{result_code:02X}",
        result_text=text,
        customer_receipt=customer,
        merchant_receipt=merchant,
        echo_id=info.trace if info else None,
        detail=detail,
    )


def status_outcome(info: StatusInformation) -> Outcome:
    """What a Status-Information says by itself: approved (00) or not."""
    rc = info.result_code if info.result_code is not None else codes.APPROVED
    return Outcome.SUCCEEDED if rc == codes.APPROVED else Outcome.DECLINED
