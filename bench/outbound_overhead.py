"""Overhead of OutboundClient over a bare httpx2.AsyncClient call to a local server.

Run by hand (or as a CI smoke), never as a timed test:

    .venv/bin/python bench/outbound_overhead.py --requests 2000

Both clients hit the same uvicorn server on 127.0.0.1 with keep-alive, in alternating blocks so
drift (CPU frequency, GC) affects both alike. The OutboundClient runs with a circuit breaker, an
audit hook that drops its records and default retries (none fire: the server always answers 200).
Reports p50/p99 latency per client and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from typing import Any

import httpx2
import uvicorn
from prometheus_client import CollectorRegistry

from tillbridge.outbound import BreakerRegistry, ExchangeRecord, OutboundClient

BODY = b'{"status":"APPROVED","id":"pay_1"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest ASGI app that answers JSON, so the server adds as little as possible."""
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"bench")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


async def drop(_record: ExchangeRecord) -> None:
    return None


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(requests: int, warmup: int, block: int) -> None:
    sock = socket.socket()
    # Without TCP_NODELAY, Nagle plus delayed ACKs add ~40 ms to every small response here and
    # drown what is being measured. Accepted sockets inherit the option on Linux.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    config = uvicorn.Config(app, lifespan="off", log_config=None, http="h11", ws="none")
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"

    bare = httpx2.AsyncClient(base_url=base)
    wrapped = OutboundClient(
        account="bench",
        base_url=base,
        breakers=BreakerRegistry(registry=CollectorRegistry()),
        audit=drop,
    )
    samples: dict[str, list[float]] = {"bare httpx2": [], "OutboundClient": []}

    async def bare_call() -> None:
        (await bare.get("/v2/payments/1")).raise_for_status()

    async def wrapped_call() -> None:
        (await wrapped.request("GET", "/v2/payments/1", group="payments")).raise_for_status()

    calls = {"bare httpx2": bare_call, "OutboundClient": wrapped_call}
    try:
        for call in calls.values():
            for _ in range(warmup):
                await call()
        done = 0
        while done < requests:
            n = min(block, requests - done)
            for name, call in calls.items():
                for _ in range(n):
                    t0 = time.perf_counter()
                    await call()
                    samples[name].append((time.perf_counter() - t0) * 1e6)
            done += n
    finally:
        await bare.aclose()
        await wrapped.aclose()
        await server.shutdown(sockets=[sock])

    print(f"{requests} sequential GETs per client, local uvicorn, keep-alive (microseconds)")
    print(f"{'client':<16}{'p50':>10}{'p99':>10}{'mean':>10}")
    for name, values in samples.items():
        print(
            f"{name:<16}{percentile(values, 0.50):>10.0f}{percentile(values, 0.99):>10.0f}"
            f"{statistics.fmean(values):>10.0f}"
        )
    base_p50 = percentile(samples["bare httpx2"], 0.50)
    base_p99 = percentile(samples["bare httpx2"], 0.99)
    ours_p50 = percentile(samples["OutboundClient"], 0.50)
    ours_p99 = percentile(samples["OutboundClient"], 0.99)
    print(f"overhead        p50 {ours_p50 - base_p50:+.0f} us   p99 {ours_p99 - base_p99:+.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--block", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.warmup, args.block))


if __name__ == "__main__":
    main()
