"""OutboundClient over real sockets: uvicorn on 127.0.0.1:0 and raw misbehaving TCP servers.

Delays between retries go through an injected sleep (recorded, not slept). The only real waiting
is the client's own read timeout in the hanging-server test, which is the behaviour under test.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tillbridge.erp.xentral.writeback import InvoicePaymentStatus, XentralWriteback
from tillbridge.errors import CircuitOpen, NotSent, OutcomeUnknown
from tillbridge.money import Money
from tillbridge.outbound import (
    HTTP_RETRY,
    BreakerConfig,
    BreakerRegistry,
    CallClass,
    OutboundClient,
)
from tillbridge.simulators.xentral import XentralSimState, create_app

pytestmark = pytest.mark.anyio


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(base_url: str, **kwargs: Any) -> OutboundClient:
    kwargs.setdefault("sleep", Sleeps())
    return OutboundClient(account="it:local", base_url=base_url, rng=random.Random(0), **kwargs)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + (await reader.readexactly(length) if length else b"")


OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: close\r\n\r\n{}"
)


async def test_retry_after_against_uvicorn(servers: Any) -> None:
    hits: list[str] = []

    async def flaky(request: Request) -> JSONResponse:
        hits.append(request.method)
        if len(hits) == 1:
            return JSONResponse({"error": "busy"}, 503, headers={"Retry-After": "1"})
        return JSONResponse({"ok": True}, headers={"X-Request-Id": "srv-2"})

    app = Starlette(routes=[Route("/flaky", flaky, methods=["GET"])])
    sleeps = Sleeps()
    async with servers.asgi(app) as base, client(base, sleep=sleeps) as c:
        response = await c.request("GET", "/flaky")
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert hits == ["GET", "GET"]
    assert sleeps == [1.0]


async def test_xentral_writeback_over_a_real_socket(servers: Any) -> None:
    state = XentralSimState(token="tok")
    state.add_invoice("5")
    state.throttle_next("3")
    sleeps = Sleeps()
    async with servers.asgi(create_app(state)) as base, client(base, sleep=sleeps) as c:
        await XentralWriteback(c, token="tok").set_invoice_payment_status(
            5, InvoicePaymentStatus.PAID, actual_amount=Money(1000, "EUR")
        )
    assert state.invoices["5"]["paymentStatus"] == "paid"
    assert sleeps == [3.0]
    assert len(state.received) == 2


async def test_connection_refused_is_not_sent_and_trips_the_breaker(servers: Any) -> None:
    breakers = BreakerRegistry(BreakerConfig(failure_threshold=2, open_seconds=60))
    base = f"http://127.0.0.1:{servers.refused_port()}"
    async with client(base, breakers=breakers, retry=replace(HTTP_RETRY, max_attempts=1)) as c:
        for _ in range(2):
            with pytest.raises(NotSent) as info:
                await c.request("POST", "/pay", call_class="money", json={"amount": "1.00"})
            assert not isinstance(info.value, OutcomeUnknown)
        with pytest.raises(CircuitOpen):
            await c.request("POST", "/pay", call_class="money", json={"amount": "1.00"})


async def test_connection_cut_after_request_is_unknown_and_not_resent(servers: Any) -> None:
    received: list[bytes] = []

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        writer.close()  # the request arrived; the answer never leaves
        await writer.wait_closed()

    async with servers.raw(cut) as base, client(base) as c:
        with pytest.raises(OutcomeUnknown) as info:
            await c.request("POST", "/v2/payments/capture", call_class="money", json={"t": 1})
    assert len(received) == 1
    assert received[0].startswith(b"POST /v2/payments/capture")
    assert info.value.details["cause"] == "RemoteProtocolError"


async def test_idempotent_write_is_resent_after_a_cut(servers: Any) -> None:
    received: list[bytes] = []

    async def cut_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        if len(received) > 1:
            writer.write(OK)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with servers.raw(cut_once) as base, client(base) as c:
        response = await c.request(
            "POST", "/v2/payments/auth", idempotent=True, json={"requestId": "op-7"}
        )
    assert response.status_code == 200
    assert response.extensions["tillbridge.earlier_unknown"] is True
    assert (
        len(received) == 2
        and received[0].split(b"\r\n\r\n")[1] == received[1].split(b"\r\n\r\n")[1]
    )


async def test_read_timeout_after_send_is_unknown(servers: Any) -> None:
    received: list[bytes] = []
    release = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        await release.wait()
        writer.close()
        await writer.wait_closed()

    short = {"read": CallClass("read", connect=2.0, read=0.2)}
    async with servers.raw(hang) as base:
        try:
            async with client(base, call_classes=short) as c:
                with pytest.raises(OutcomeUnknown) as info:
                    await c.request("POST", "/refund", json={"amount": "5.00"})
        finally:
            release.set()
    assert len(received) == 1
    assert info.value.details["cause"] == "ReadTimeout"
