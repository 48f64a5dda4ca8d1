"""Pure parts of the terminal engine: recovery decisions, stored evidence, the SSE format."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tillbridge.connectors.terminals import store as ts
from tillbridge.connectors.terminals.events import StoredEvent
from tillbridge.connectors.terminals.family import CardPresentFamily, TerminalSide
from tillbridge.connectors.terminals.store import TerminalPayment, result_values
from tillbridge.connectors.terminals.zvt.connector import could_not_ask
from tillbridge.domain.payments import Operation, Payment
from tillbridge.domain.states import OperationKind, Outcome, PaymentState
from tillbridge.domain.states import Outcome as DomainOutcome
from tillbridge.money import Money
from tillbridge.payments import contract
from tillbridge.payments.contract import ConnectorResult
from tillbridge.payments.families import Snapshot

NOW = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def unknown(detail: str) -> ConnectorResult:
    return ConnectorResult(Outcome.UNKNOWN, OperationKind.PURCHASE, detail=detail)


def test_one_outcome_enum_for_the_whole_bridge() -> None:
    assert contract.Outcome is DomainOutcome


def test_only_link_problems_are_asked_again() -> None:
    assert could_not_ask(unknown("cannot ask the terminal: cannot connect to terminal"))
    assert could_not_ask(unknown("terminal busy: the terminal is busy (receiver not ready)"))
    assert could_not_ask(
        unknown("the terminal did not repeat its last transaction: terminal closed the link")
    )
    # The terminal answered; asking again gives the same answer.
    assert not could_not_ask(
        unknown("the terminal did not repeat its last transaction: aborted: function not possible")
    )
    assert not could_not_ask(unknown("the terminal's last transaction has a different amount"))
    assert not could_not_ask(unknown(""))


def test_operator_instruction_names_the_evidence_and_the_command() -> None:
    tp = TerminalPayment("pay_1", "op_1", "lane1", "purchase", NOW, previous_echo_id="000041")
    tp.trace_number = "000042"
    amount = Money(1234, "EUR")
    p = Payment("pay_1", amount, "R", "lane1", PaymentState.UNKNOWN, NOW, NOW)
    op = Operation("op_1", "pay_1", OperationKind.PURCHASE, amount, "tx_1", NOW, NOW)
    side = TerminalSide(tp, ts.TerminalState("lane1"), None)
    text = CardPresentFamily.instruction(None, Snapshot(p, op, side))  # type: ignore[arg-type]
    assert "terminal lane1" in text and "12.34 EUR" in text
    assert "trace 000042" in text and "previous trace 000041" in text
    assert "tillbridge payments resolve pay_1 --as succeeded|failed" in text
    assert "Do not repeat the payment" in text


def test_stored_evidence_never_holds_more_than_a_masked_pan() -> None:
    result = ConnectorResult(
        Outcome.SUCCEEDED,
        OperationKind.PURCHASE,
        masked_pan="6725591234561234",  # a terminal that sends too much
        trace_number="000007",
        customer_receipt=("line",),
    )
    values = result_values(result)
    assert values["masked_pan"] == "672559******1234"
    assert values["trace_number"] == "000007" and values["customer_receipt"] == ["line"]
    assert "merchant_receipt" not in values  # a thinner answer never erases evidence


def test_sse_frame() -> None:
    ev = StoredEvent(7, "pay_1", "prompt", "INSERT CARD", None, 10, None, NOW)
    frame = ev.sse().decode()
    head, data = frame.split("data: ")
    assert head == "id: 7\nevent: prompt\n"
    assert frame.endswith("\n\n")
    assert json.loads(data) == {
        "id": 7, "kind": "prompt", "text": "INSERT CARD", "receipt": None, "code": 10,
        "data": None, "at": "2025-03-01T10:00:00.000000Z",
    }  # fmt: skip
