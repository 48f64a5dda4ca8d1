"""The payment aggregate: the transition table, no-op repeats, refunds never above capture."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tillbridge.domain.payments import Payment, new_id
from tillbridge.domain.states import (
    FINAL_STATES,
    TRANSITIONS,
    Outcome,
    PaymentState,
    can_transition,
)
from tillbridge.errors import IllegalTransition, RefundExceedsCapture, ValidationError
from tillbridge.money import Money

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
S = PaymentState


def make(state: PaymentState = S.CREATED, amount: int = 1000) -> Payment:
    return Payment(
        id=new_id("pay"),
        amount=Money(amount, "EUR"),
        reference="SO042",
        connector="fake",
        state=state,
        created_at=NOW,
        updated_at=NOW,
    )


def test_every_state_is_in_the_table() -> None:
    assert set(TRANSITIONS) == set(PaymentState)


@pytest.mark.parametrize("source", list(PaymentState))
@pytest.mark.parametrize("target", list(PaymentState))
def test_transition_follows_the_table_exactly(source: PaymentState, target: PaymentState) -> None:
    p = make(source)
    if target in (S.PARTIALLY_REFUNDED, S.REFUNDED) and source != target:
        with pytest.raises(IllegalTransition):  # only settled refunds lead there
            p.transition(target, NOW)
        return
    if source == target:
        assert p.transition(target, NOW) is False  # a repeat is a no-op
        assert p.state == source
    elif target in TRANSITIONS[source]:
        assert p.transition(target, NOW) is True
        assert p.state == target
    else:
        with pytest.raises(IllegalTransition):
            p.transition(target, NOW)
        assert p.state == source  # an illegal transition changes nothing


def test_final_states_have_no_way_out() -> None:
    for state in FINAL_STATES:
        assert all(not can_transition(state, t) for t in PaymentState if t != state)


def test_unknown_is_left_only_towards_a_resolution() -> None:
    assert not can_transition(S.UNKNOWN, S.IN_PROGRESS)  # never "try again"
    assert not can_transition(S.UNKNOWN, S.CREATED)


def test_cancel_only_before_money_moves() -> None:
    p = make(S.CREATED)
    assert p.cancel(NOW) is True
    assert p.cancel(NOW) is False  # repeated cancel: no-op
    with pytest.raises(IllegalTransition):
        make(S.CAPTURED).cancel(NOW)


def test_partial_and_several_refunds() -> None:
    p = make(S.CREATED, 1000)
    p.apply_purchase_outcome(Outcome.SUCCEEDED, NOW)
    assert p.state == S.CAPTURED and p.captured_minor == 1000
    r1 = p.request_refund(Money(300, "EUR"), "re_1", "op_1", NOW)
    p.settle_refund(r1, Outcome.SUCCEEDED, NOW)
    assert p.state == S.PARTIALLY_REFUNDED and p.refunded_minor == 300
    assert p.settle_refund(r1, Outcome.SUCCEEDED, NOW) is False  # duplicate notification
    r2 = p.request_refund(Money(700, "EUR"), "re_2", "op_2", NOW)
    with pytest.raises(RefundExceedsCapture):
        p.request_refund(Money(1, "EUR"), "re_3", "op_3", NOW)  # 700 is reserved in flight
    p.settle_refund(r2, Outcome.SUCCEEDED, NOW)
    assert p.state == S.REFUNDED and p.refundable == Money(0, "EUR")


def test_declined_refund_releases_the_reservation() -> None:
    p = make(S.CAPTURED, 1000)
    p.captured_minor = 1000
    r = p.request_refund(Money(1000, "EUR"), "re_1", "op_1", NOW)
    p.settle_refund(r, Outcome.DECLINED, NOW)
    assert p.refundable == Money(1000, "EUR") and p.state == S.CAPTURED


@pytest.mark.parametrize(
    "amount",
    [Money(0, "EUR"), Money(-5, "EUR"), Money(5, "USD")],
)
def test_refund_amount_validation(amount: Money) -> None:
    p = make(S.CAPTURED)
    p.captured_minor = 1000
    with pytest.raises(ValidationError):
        p.request_refund(amount, "re", "op", NOW)


class PaymentMachine(RuleBasedStateMachine):
    """Random sequences of outcomes, refunds and cancels never break the money rules."""

    def __init__(self) -> None:
        super().__init__()
        self.p = make(S.CREATED, 10_000)
        self.inflight: list = []
        self.refunded_expected = 0

    @rule(target_state=st.sampled_from(list(PaymentState)))
    def try_transition(self, target_state: PaymentState) -> None:
        before = self.p.state
        try:
            self.p.transition(target_state, NOW)
        except IllegalTransition:
            assert self.p.state == before
        else:
            assert can_transition(before, target_state)

    @rule(outcome=st.sampled_from(list(Outcome)))
    def purchase_outcome(self, outcome: Outcome) -> None:
        try:
            self.p.apply_purchase_outcome(outcome, NOW)
        except IllegalTransition:
            pass

    @precondition(lambda self: self.p.state in (S.CAPTURED, S.PARTIALLY_REFUNDED))
    @rule(amount=st.integers(min_value=1, max_value=12_000))
    def request_refund(self, amount: int) -> None:
        try:
            r = self.p.request_refund(Money(amount, "EUR"), new_id("re"), new_id("op"), NOW)
        except RefundExceedsCapture:
            return
        self.inflight.append(r)

    @precondition(lambda self: bool(self.inflight))
    @rule(data=st.data(), outcome=st.sampled_from(list(Outcome)))
    def settle(self, data: st.DataObject, outcome: Outcome) -> None:
        r = data.draw(st.sampled_from(self.inflight))
        was_final = r.outcome in (Outcome.SUCCEEDED, Outcome.DECLINED, Outcome.NOT_SENT)
        try:
            changed = self.p.settle_refund(r, outcome, NOW)
        except IllegalTransition:
            assert was_final
            return
        if changed and outcome == Outcome.SUCCEEDED:
            self.refunded_expected += r.amount.minor

    @invariant()
    def never_refund_more_than_captured(self) -> None:
        p = self.p
        assert 0 <= p.refunded_minor <= p.captured_minor
        assert p.refunded_minor + p.pending_refund_minor <= p.captured_minor
        assert p.pending_refund_minor >= 0
        assert p.refunded_minor == self.refunded_expected

    @invariant()
    def refunded_state_matches_amounts(self) -> None:
        p = self.p
        if p.state == S.REFUNDED:
            assert p.refunded_minor == p.captured_minor
        if p.state == S.PARTIALLY_REFUNDED:
            assert 0 < p.refunded_minor < p.captured_minor


TestPaymentMachine = PaymentMachine.TestCase
