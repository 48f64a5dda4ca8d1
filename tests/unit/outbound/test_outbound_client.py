"""OutboundClient against MockTransport: retries only when safe, outcome classification,
Retry-After, breaker, rate limit and the audit hook. No real sleeps: FakeClock.sleep records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx2
import pytest
from prometheus_client import CollectorRegistry

from tillbridge.errors import CircuitOpen, ConfigError, NotSent, OutcomeUnknown
from tillbridge.outbound import (
    HTTP_RETRY,
    NO_RETRY,
    AccountRateLimit,
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    ExchangeRecord,
    OutboundClient,
    RateLimited,
    still_processing_statuses,
)

pytestmark = pytest.mark.anyio

MakeClient = Callable[..., OutboundClient]
R = Callable[..., httpx2.Response]


# --- retries only when safe ----------------------------------------------------------------------


async def test_get_is_retried_on_503_then_succeeds(
    make_client: MakeClient, script: Any, r: R, fake_time: Any
) -> None:
    s = script(r(503), r(200, b'{"ok":true}'))
    async with make_client(s) as client:
        response = await client.request("GET", "/v2/payments/1")
    assert response.status_code == 200
    assert s.calls == 2
    assert len(fake_time.sleeps) == 1
    assert response.extensions["tillbridge.attempts"] == 2


async def test_plain_post_is_never_retried_on_5xx(
    make_client: MakeClient, script: Any, r: R
) -> None:
    s = script(r(503), r(200))
    async with make_client(s) as client:
        response = await client.request("POST", "/v2/payments/capture", call_class="money", json={})
    assert response.status_code == 503  # returned as-is; the connector decides
    assert s.calls == 1


async def test_idempotent_post_is_retried_on_500(
    make_client: MakeClient, script: Any, r: R
) -> None:
    s = script(r(500), r(201))
    async with make_client(s) as client:
        response = await client.request(
            "POST",
            "/v2/payments/auth",
            call_class="money",
            idempotent=True,
            json={"requestId": "op-1"},
        )
    assert response.status_code == 201
    assert s.calls == 2
    assert s.requests[0].content == s.requests[1].content  # the same body, same key


@pytest.mark.parametrize("status", [400, 401, 402, 404, 409, 422, 501])
async def test_client_errors_and_permanent_5xx_are_not_retried(
    make_client: MakeClient, script: Any, r: R, status: int
) -> None:
    s = script(r(status), r(200))
    async with make_client(s) as client:
        response = await client.request("GET", "/x")
    assert response.status_code == status
    assert s.calls == 1


async def test_attempts_are_bounded_and_last_answer_returned(
    make_client: MakeClient, script: Any, r: R
) -> None:
    s = script(r(502))
    async with make_client(s, retry=replace(HTTP_RETRY, max_attempts=4)) as client:
        response = await client.request("GET", "/x")
    assert response.status_code == 502
    assert s.calls == 4


async def test_total_time_budget_stops_retrying(
    make_client: MakeClient, script: Any, r: R, fake_time: Any
) -> None:
    s = script(r(503, **{"retry-after": "4"}))
    policy = replace(HTTP_RETRY, max_attempts=10, max_total=timedelta(seconds=10))
    async with make_client(s, retry=policy) as client:
        response = await client.request("GET", "/x")
    assert response.status_code == 503
    assert fake_time.sleeps == [4.0, 4.0]  # a third wait would end after 12 s > 10 s
    assert s.calls == 3


# --- Retry-After ---------------------------------------------------------------------------------


async def test_retry_after_seconds_is_honoured(
    make_client: MakeClient, script: Any, r: R, fake_time: Any
) -> None:
    s = script(r(429, **{"retry-after": "7"}), r(200))
    async with make_client(s) as client:
        assert (await client.request("GET", "/x")).status_code == 200
    assert fake_time.sleeps == [7.0]


async def test_retry_after_http_date_is_honoured(
    make_client: MakeClient, script: Any, r: R, fake_time: Any
) -> None:
    when = datetime.fromtimestamp(fake_time.wall() + 12, tz=UTC)
    s = script(r(503, **{"retry-after": format_datetime(when, usegmt=True)}), r(200))
    async with make_client(s) as client:
        assert (await client.request("GET", "/x")).status_code == 200
    assert fake_time.sleeps == [12.0]


async def test_too_long_retry_after_returns_the_answer(
    make_client: MakeClient, script: Any, r: R, fake_time: Any
) -> None:
    s = script(r(429, **{"retry-after": "3600"}), r(200))
    async with make_client(s) as client:
        response = await client.request("GET", "/x")
    assert response.status_code == 429  # the job reschedules itself; we do not hold for an hour
    assert fake_time.sleeps == []
    assert s.calls == 1


async def test_unusable_retry_after_falls_back_to_backoff(
    make_client: MakeClient, script: Any, r: R, fake_time: Any
) -> None:
    s = script(r(429, **{"retry-after": "later"}), r(200))
    one_second = timedelta(seconds=1)
    policy = replace(HTTP_RETRY, base_delay=one_second, max_delay=one_second)
    async with make_client(s, retry=policy) as client:
        assert (await client.request("GET", "/x")).status_code == 200
    assert len(fake_time.sleeps) == 1 and 0.0 <= fake_time.sleeps[0] <= 1.0


async def test_still_processing_answer_is_retried_only_with_predicate(
    make_client: MakeClient, script: Any, r: R
) -> None:
    s = script(r(409), r(200))
    async with make_client(s, still_processing=still_processing_statuses(409)) as client:
        response = await client.request("POST", "/capture", idempotent=True, json={})
    assert response.status_code == 200
    assert s.calls == 2

    s = script(r(409), r(200))
    async with make_client(s) as client:  # default: 409 is a plain conflict
        assert (
            await client.request("POST", "/capture", idempotent=True, json={})
        ).status_code == 409


# --- outcome classification ---------------------------------------------------------------------


async def test_timeout_after_send_is_unknown_and_not_retried_for_plain_post(
    make_client: MakeClient, script: Any
) -> None:
    s = script(httpx2.ReadTimeout)
    async with make_client(s) as client:
        with pytest.raises(OutcomeUnknown) as info:
            await client.request(
                "POST",
                "https://api.provider.test/v2/capture?token=tok_secret",
                call_class="money",
                json={"amount": "10.00"},
            )
    assert s.calls == 1
    details = info.value.details
    assert details["method"] == "POST"
    assert details["attempts"] == 1
    assert details["cause"] == "ReadTimeout"
    assert "tok_secret" not in details["url"] and "tok_secret" not in str(info.value)
    assert details["account"] == "acme:eu" and details["call_class"] == "money"


@pytest.mark.parametrize("exc", [httpx2.ReadError, httpx2.RemoteProtocolError, httpx2.WriteTimeout])
async def test_cut_connections_after_sending_are_unknown(
    make_client: MakeClient, script: Any, exc: type[Exception]
) -> None:
    async with make_client(script(exc)) as client:
        with pytest.raises(OutcomeUnknown):
            await client.request("POST", "/x", json={})


@pytest.mark.parametrize("exc", [httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout])
async def test_refused_before_sending_is_not_sent(
    make_client: MakeClient, script: Any, exc: type[Exception]
) -> None:
    s = script(exc)
    async with make_client(s) as client:
        with pytest.raises(NotSent) as info:
            await client.request("POST", "/x", json={})
    assert not isinstance(info.value, OutcomeUnknown)
    assert s.calls == 1  # a plain POST is not retried even when it provably never left


async def test_read_is_retried_after_timeout_then_unknown_when_exhausted(
    make_client: MakeClient, script: Any
) -> None:
    s = script(httpx2.ReadTimeout)
    async with make_client(s) as client:
        with pytest.raises(OutcomeUnknown) as info:
            await client.request("GET", "/x")
    assert s.calls == 3
    assert info.value.details["attempts"] == 3


async def test_unknown_then_not_sent_is_still_unknown(make_client: MakeClient, script: Any) -> None:
    # The first attempt may have captured; the connect error of the second changes nothing.
    s = script(httpx2.ReadTimeout, httpx2.ConnectError)
    async with make_client(s, retry=replace(HTTP_RETRY, max_attempts=2)) as client:
        with pytest.raises(OutcomeUnknown):
            await client.request("POST", "/capture", idempotent=True, json={})


async def test_evidence_keeps_the_last_answer(make_client: MakeClient, script: Any, r: R) -> None:
    s = script(r(503, **{"x-request-id": "req-9"}), httpx2.ReadTimeout)
    async with make_client(s, retry=replace(HTTP_RETRY, max_attempts=2)) as client:
        with pytest.raises(OutcomeUnknown) as info:
            await client.request("GET", "/x")
    assert info.value.details["status"] == 503
    assert info.value.details["provider_request_id"] == "req-9"


async def test_unusable_request_is_not_sent_without_touching_the_transport(
    make_client: MakeClient, script: Any, r: R
) -> None:
    s = script(r(200))
    async with make_client(s, base_url="") as client:
        with pytest.raises(NotSent):
            await client.request("GET", "ftp://files.test/x")
        with pytest.raises(ConfigError):
            await client.request("GET", "/x", call_class="nope")
    assert s.calls == 0


async def test_call_class_timeouts_are_applied(make_client: MakeClient, script: Any, r: R) -> None:
    s = script(r(200))
    async with make_client(s) as client:
        await client.request("GET", "/x")
        await client.request("POST", "/y", call_class="money", json={})
    read, money = (req.extensions["timeout"] for req in s.requests)
    assert read["read"] == 20.0 and money["read"] == 70.0
    assert read["connect"] == money["connect"] == 10.0


# --- circuit breaker ----------------------------------------------------------------------------


async def test_breaker_opens_fails_fast_and_recovers(
    make_client: MakeClient, script: Any, r: R, fake_time: Any
) -> None:
    breakers = BreakerRegistry(
        BreakerConfig(failure_threshold=3, open_seconds=30),
        clock=fake_time.monotonic,
        registry=CollectorRegistry(),
    )
    s = script(httpx2.ConnectError, httpx2.ConnectError, httpx2.ConnectError, r(200))
    async with make_client(s, breakers=breakers, retry=NO_RETRY) as client:
        for _ in range(3):
            with pytest.raises(NotSent):
                await client.request("GET", "/x", group="payments")
        with pytest.raises(CircuitOpen) as info:
            await client.request("GET", "/x", group="payments")
        assert s.calls == 3  # refused without touching the network
        assert info.value.details["attempts"] == 0
        # other groups of the same account are not affected
        assert (await client.request("GET", "/x", group="refunds")).status_code == 200
        fake_time.advance(30)
        assert (await client.request("GET", "/x", group="payments")).status_code == 200
    assert breakers.get("acme:eu", "payments").state is BreakerState.CLOSED


async def test_4xx_never_opens_the_breaker(
    make_client: MakeClient, script: Any, r: R, fake_time: Any
) -> None:
    breakers = BreakerRegistry(BreakerConfig(failure_threshold=2), clock=fake_time.monotonic)
    async with make_client(script(r(402)), breakers=breakers) as client:
        for _ in range(5):
            await client.request("POST", "/pay", json={})
    assert breakers.get("acme:eu", "default").state is BreakerState.CLOSED


async def test_breaker_opening_mid_retries_after_unknown_is_unknown(
    make_client: MakeClient, script: Any, fake_time: Any
) -> None:
    breakers = BreakerRegistry(BreakerConfig(failure_threshold=1), clock=fake_time.monotonic)
    async with make_client(script(httpx2.ReadTimeout), breakers=breakers) as client:
        with pytest.raises(OutcomeUnknown):
            await client.request("POST", "/capture", idempotent=True, json={})


# --- rate limit ----------------------------------------------------------------------------------


async def test_rate_limit_refuses_before_sending(
    make_client: MakeClient, script: Any, r: R
) -> None:
    s = script(r(200))
    limit = AccountRateLimit("acme:eu", max_rate=1, period=60, max_wait=0)
    async with make_client(s, rate_limit=limit) as client:
        await client.request("GET", "/x")
        with pytest.raises(RateLimited) as info:
            await client.request("GET", "/x")
    assert isinstance(info.value, NotSent)
    assert s.calls == 1


# --- audit hook ----------------------------------------------------------------------------------


async def test_audit_gets_a_redacted_record_per_attempt(
    make_client: MakeClient, script: Any, r: R
) -> None:
    records: list[ExchangeRecord] = []

    async def audit(record: ExchangeRecord) -> None:
        records.append(record)

    s = script(
        r(503, b"busy"),
        r(200, b'{"id":"pay_1"}' + b"x" * 100, **{"x-request-id": "req-2", "set-cookie": "s=1"}),
    )
    async with make_client(s, audit=audit, max_audit_body=20) as client:
        await client.request(
            "POST",
            "/pay?api_key=k123",
            idempotent=True,
            json={"amount": "1.00"},
            headers={"Authorization": "Bearer sk_live", "Idempotency-Key": "op-1"},
        )
    assert [(x.attempt, x.status, x.outcome) for x in records] == [
        (1, 503, "response"),
        (2, 200, "response"),
    ]
    last = records[-1]
    assert last.request_headers["authorization"] == "[redacted]"
    assert last.request_headers["idempotency-key"] == "op-1"
    assert last.response_headers["set-cookie"] == "[redacted]"
    assert last.provider_request_id == "req-2"
    assert last.response_body_truncated and len(last.response_body) == 20
    assert "k123" not in last.url and last.idempotent
    assert "sk_live" not in repr(records)


async def test_audit_records_failures_and_hook_errors_do_not_break_the_call(
    make_client: MakeClient, script: Any, r: R
) -> None:
    records: list[ExchangeRecord] = []

    async def audit(record: ExchangeRecord) -> None:
        records.append(record)
        raise RuntimeError("audit store down")

    async with make_client(script(httpx2.ReadTimeout, r(200)), audit=audit) as client:
        assert (await client.request("GET", "/x")).status_code == 200
    assert [(x.outcome, x.error) for x in records] == [
        ("unknown", "ReadTimeout"),
        ("response", None),
    ]


async def test_cancelled_probe_frees_the_half_open_slot(
    make_client: MakeClient, script: Any, r: R, fake_time: Any
) -> None:
    breakers = BreakerRegistry(
        BreakerConfig(failure_threshold=1, open_seconds=5), clock=fake_time.monotonic
    )
    s = script(httpx2.ConnectError, asyncio.CancelledError, r(200))
    async with make_client(s, breakers=breakers, retry=NO_RETRY) as client:
        with pytest.raises(NotSent):
            await client.request("GET", "/x")
        fake_time.advance(5)
        with pytest.raises(asyncio.CancelledError):
            await client.request("GET", "/x")  # the probe is cancelled mid-flight
        assert (await client.request("GET", "/x")).status_code == 200  # next call may probe
    assert breakers.get("acme:eu", "default").state is BreakerState.CLOSED


@pytest.mark.parametrize("exc", [httpx2.LocalProtocolError, RuntimeError])
async def test_our_own_failures_are_not_repeated(
    make_client: MakeClient, script: Any, exc: type[Exception]
) -> None:
    # An unexpected exception is classified unknown: it may have happened after sending.
    s = script(exc)
    async with make_client(s) as client:
        with pytest.raises((NotSent, OutcomeUnknown)):
            await client.request("GET", "/x")
    assert s.calls == 1
