"""Matching the PT's last transaction against what the bridge persisted."""

from __future__ import annotations

import pytest

from tillbridge.connectors.terminals.zvt.messages import StatusInformation
from tillbridge.connectors.terminals.zvt.recovery import match_last
from tillbridge.connectors.terminals.zvt.requests import StatusQuery
from tillbridge.domain.states import OperationKind, Outcome
from tillbridge.money import Money


def last(
    rc: int = 0, amount: int = 1000, trace: str = "000008", receipt: str = "0004"
) -> StatusInformation:
    return StatusInformation(result_code=rc, amount=amount, trace=trace, receipt_number=receipt)


def query(**kw: str) -> StatusQuery:
    return StatusQuery("op-1", OperationKind.PURCHASE, Money(1000, "EUR"), **kw)


@pytest.mark.parametrize(
    ("q", "info", "outcome", "matched"),
    [
        (query(echo_id="000008"), last(), Outcome.SUCCEEDED, True),
        (query(receipt_number="0004"), last(), Outcome.SUCCEEDED, True),
        (query(echo_id="000008"), last(rc=0x05), Outcome.DECLINED, True),
        (query(echo_id="000008"), last(rc=0x6C), Outcome.DECLINED, True),
        # Only the previous transaction's trace is known: the next trace number is ours ...
        (query(previous_echo_id="000007"), last(), Outcome.SUCCEEDED, True),
        # ... the previous one itself means ours was never booked ...
        (query(previous_echo_id="000008"), last(), Outcome.DECLINED, False),
        # ... and a gap means someone else's transaction came in between.
        (query(previous_echo_id="000005"), last(), Outcome.UNKNOWN, False),
        (query(echo_id="000009"), last(), Outcome.UNKNOWN, False),
        (query(receipt_number="0005"), last(), Outcome.UNKNOWN, False),
        (query(echo_id="000008"), last(amount=999), Outcome.UNKNOWN, False),
        # An amount alone never identifies a sale.
        (query(), last(), Outcome.UNKNOWN, False),
        (query(echo_id="000008"), None, Outcome.UNKNOWN, False),
    ],
)
def test_match_last(
    q: StatusQuery, info: StatusInformation | None, outcome: Outcome, matched: bool
) -> None:
    result = match_last(q, info)
    assert (result.outcome, result.matched) == (outcome, matched)
    assert result.reason
