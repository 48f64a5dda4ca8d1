"""Xentral write-back client against the in-process simulator (httpx2.ASGITransport)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from typing import Any

import httpx2
import pytest

from tillbridge.erp.xentral.writeback import (
    InvoicePaymentStatus,
    XentralWriteback,
    invoice_payment_patch,
    sales_order_approval_patch,
)
from tillbridge.errors import (
    AuthError,
    ConfigError,
    Forbidden,
    NotFound,
    ValidationError,
    XentralUnavailable,
)
from tillbridge.money import Money
from tillbridge.outbound import HTTP_RETRY, ExchangeRecord, OutboundClient
from tillbridge.simulators.xentral import XentralSimState, create_app

pytestmark = pytest.mark.anyio


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def state() -> XentralSimState:
    sim = XentralSimState(token="tok-123")
    sim.add_invoice("17")
    sim.add_sales_order("42")
    return sim


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def audit_log() -> list[ExchangeRecord]:
    return []


@pytest.fixture
async def client(
    state: XentralSimState, sleeps: Sleeps, audit_log: list[ExchangeRecord]
) -> AsyncIterator[OutboundClient]:
    async def audit(record: ExchangeRecord) -> None:
        audit_log.append(record)

    async with OutboundClient(
        account="xentral:demo",
        base_url="https://demo.xentral.biz",
        transport=httpx2.ASGITransport(app=create_app(state)),
        retry=replace(HTTP_RETRY, max_attempts=3),
        audit=audit,
        sleep=sleeps,
        rng=random.Random(0),
    ) as c:
        yield c


@pytest.fixture
def writeback(client: OutboundClient) -> XentralWriteback:
    return XentralWriteback(client, token="tok-123")


def test_patch_bodies_follow_the_v3_schema() -> None:
    assert invoice_payment_patch(
        InvoicePaymentStatus.PAID,
        paid_at=date(2025, 6, 11),
        actual_amount=Money(2790, "EUR"),
        discount_given=Money(0, "EUR"),
    ) == {
        "dunningSetManually": True,
        "dunningManualSettings": {
            "paymentStatus": "paid",
            "paidAt": "2025-06-11",
            "actualAmount": {"amount": "27.90", "currency": "EUR"},
            "discountGiven": {"amount": "0.00", "currency": "EUR"},
        },
    }
    assert sales_order_approval_patch() == {"manualPaymentApproval": True}


async def test_invoice_marked_paid(
    writeback: XentralWriteback, state: XentralSimState, audit_log: list[ExchangeRecord]
) -> None:
    result = await writeback.set_invoice_payment_status(
        17, InvoicePaymentStatus.PAID, paid_at=date(2025, 6, 11), actual_amount=Money(2790, "EUR")
    )
    assert result.status == 200
    assert result.provider_request_id == "sim-1"
    assert state.invoices["17"]["paymentStatus"] == "paid"
    assert result.resource is not None and result.resource["data"]["paymentStatus"] == "paid"
    (received,) = state.received
    assert (received.method, received.path, received.authorized) == (
        "PATCH",
        "/api/v3/invoices/17",
        True,
    )
    assert received.body["dunningManualSettings"]["actualAmount"] == {
        "amount": "27.90",
        "currency": "EUR",
    }
    # the token travels to Xentral but never into the audit record
    assert audit_log[0].request_headers["authorization"] == "[redacted]"
    assert "tok-123" not in repr(audit_log)


async def test_sales_order_payment_approved(
    writeback: XentralWriteback, state: XentralSimState
) -> None:
    await writeback.approve_sales_order_payment("42")
    assert state.sales_orders["42"]["manualPaymentApproval"] is True


async def test_5xx_is_retried_because_the_patch_is_idempotent(
    writeback: XentralWriteback, state: XentralSimState, sleeps: Sleeps
) -> None:
    state.fail_next(503, times=2)
    await writeback.set_invoice_payment_status("17", InvoicePaymentStatus.PAID)
    assert len(state.received) == 3
    assert len(sleeps) == 2
    assert state.invoices["17"]["paymentStatus"] == "paid"


async def test_applied_then_500_then_retry_leaves_one_consistent_result(
    writeback: XentralWriteback, state: XentralSimState
) -> None:
    state.fail_next(500, apply=True)
    await writeback.set_invoice_payment_status("17", InvoicePaymentStatus.PAID)
    assert len(state.received) == 2
    assert state.invoices["17"]["paymentStatus"] == "paid"


async def test_429_retry_after_is_honoured(
    writeback: XentralWriteback, state: XentralSimState, sleeps: Sleeps
) -> None:
    state.throttle_next("2")
    await writeback.approve_sales_order_payment("42")
    assert sleeps == [2.0]


async def test_persistent_5xx_becomes_unavailable(
    writeback: XentralWriteback, state: XentralSimState
) -> None:
    state.fail_next(502, times=5)
    with pytest.raises(XentralUnavailable) as info:
        await writeback.approve_sales_order_payment("42")
    assert info.value.details["status"] == 502
    assert len(state.received) == 3


@pytest.mark.parametrize(
    ("fault", "error"),
    [(403, Forbidden), (422, ValidationError), (400, ValidationError), (302, ConfigError)],
)
async def test_refusals_map_to_the_error_tree(
    writeback: XentralWriteback, state: XentralSimState, fault: int, error: type[Exception]
) -> None:
    state.fail_next(fault)
    with pytest.raises(error):
        await writeback.approve_sales_order_payment("42")
    assert len(state.received) == 1  # 4xx and 3xx are never retried


async def test_unknown_document_is_not_found(writeback: XentralWriteback) -> None:
    with pytest.raises(NotFound):
        await writeback.set_invoice_payment_status("999", InvoicePaymentStatus.PAID)


async def test_wrong_token_is_an_auth_error(client: OutboundClient, state: XentralSimState) -> None:
    with pytest.raises(AuthError):
        await XentralWriteback(client, token="wrong").approve_sales_order_payment("42")
    assert state.received[0].authorized is False


@pytest.mark.parametrize("doc_id", ["../invoices/1", "abc", "", "1?x=1", True, -1])
async def test_document_ids_cannot_steer_the_url(
    writeback: XentralWriteback, state: XentralSimState, doc_id: Any
) -> None:
    with pytest.raises(ValidationError):
        await writeback.approve_sales_order_payment(doc_id)
    assert state.received == []


async def test_token_is_required_and_never_shown(client: OutboundClient) -> None:
    with pytest.raises(ConfigError):
        XentralWriteback(client, token="")
    assert "tok-123" not in repr(XentralWriteback(client, token="tok-123"))
