"""Benchmark: webhook intake (verified, stored durably, 2xx) on SQLite and PostgreSQL.

    .venv/bin/python bench/webhooks_intake.py [--engine sqlite|postgres|both] [--seconds 8]
        [--connections 64] [--rate 1000] [--pg-admin-url URL] [--gc-freeze]

Per engine: two uvicorn server processes (httptools, uvloop, no access log) serve the real
bridge app (``create_app(build_runtime(...))``, API only, no worker); a separate load process on
loopback sends pre-signed, distinct Xentral POS events, spread over both servers:

* **max**: closed loop, ``--connections`` keep-alive connections sending back to back for
  ``--seconds``: webhooks/s and latency percentiles;
* **at rate**: open loop at ``--rate`` requests/s for ``--seconds``; latency is measured from the
  *scheduled* send time, so a stall is not hidden by the load slowing down (no coordinated
  omission): p50 / p99.

Then the same two measurements against the **baseline**: the seed guide's Flask middleware minus
the terminal call, i.e. parse the JSON body and answer 200, storing nothing. Flask is not
installed, so the baseline is a minimal Starlette app under the same uvicorn set-up; the ratio
``bridge / baseline`` shows what verification and durable storage cost.

``--gc-freeze`` makes the servers call ``gc.freeze()`` once the app is built, so the collector
stops re-scanning the hundreds of thousands of start-up objects (imports, FastAPI, SQLAlchemy)
in its full collections; those pauses are most of the tail latency otherwise.

After each bridge run the inbox is counted: every 200 must be a stored row. Targets (2 cores):
>= 2,000/s SQLite, >= 3,000/s PostgreSQL, p99 <= 50 ms at 1,000/s. Run by hand; never a timed
test. The load generator shares the machine's cores with the servers (and PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
PG_ADMIN = os.environ.get(
    "TILLBRIDGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
KEY = "bench-webhook-key-0001"
ACCOUNT = "xpos"
PATH = f"/webhooks/xentral/{ACCOUNT}"


# ------------------------------------------------------------------------------------ servers


def serve(kind: str, db_url: str, config: str) -> None:
    """Child process: run one server on a free port; print ``READY <port>`` once listening."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    app: Any
    if kind == "bridge":
        from tillbridge.api import create_app
        from tillbridge.app.runtime import build_runtime
        from tillbridge.settings import Settings

        app = create_app(build_runtime(Settings(database_url=db_url, config=Path(config))))
    else:

        async def webhook(request: Request) -> JSONResponse:
            data = await request.json()  # what the seed's Flask handler does, minus the terminal
            return JSONResponse({"status": "success", "operation": data.get("type")})

        app = Starlette(routes=[Route(PATH, webhook, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    cfg = uvicorn.Config(
        app,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="warning",
        backlog=2048,
        timeout_keep_alive=60,  # the open-loop pool keeps idle connections between bursts
    )
    server = uvicorn.Server(cfg)
    if os.environ.get("BENCH_GC_FREEZE"):
        import gc

        gc.freeze()  # start-up objects out of the collector's way: fewer long full collections
    print(f"READY {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


@contextmanager
def servers(kind: str, db_url: str, config: Path, env: dict[str, str]) -> Iterator[list[int]]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE), "serve", kind, db_url, str(config)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    ports = []
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"server did not start: {line!r}")
            ports.append(int(line.split()[1]))
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


# ------------------------------------------------------------------------------- load process


def build_requests(n: int, start: int) -> list[bytes]:
    """``n`` distinct signed deliveries as raw HTTP/1.1 request bytes (signed now)."""
    from tillbridge.money import Money
    from tillbridge.simulators.xentral import card_payment_body, envelope, sign_delivery

    now = int(time.time())
    out = []
    for i in range(start, start + n):
        body = envelope(card_payment_body(Money(1234, "EUR"), document_number=str(10**8 + i)))
        d = sign_delivery(body, key=KEY, timestamp=now)
        head = [f"POST {PATH} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(d.body)}"]
        head += [f"{k}: {v}" for k, v in d.headers.items()]
        out.append(("\r\n".join(head) + "\r\n\r\n").encode() + d.body)
    return out


class Conn:
    """A minimal keep-alive HTTP/1.1 client connection (status + Content-Length bodies)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


async def connect(port: int) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    return Conn(reader, writer)


def summarize(lat: list[float], codes: dict[int, int], seconds: float) -> dict[str, Any]:
    lat.sort()

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else 0.0

    ok = codes.get(200, 0)
    return {
        "requests": len(lat),
        "ok": ok,
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "per_s": round(ok / seconds, 1),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    }


async def closed_loop(ports: list[int], reqs: list[bytes], conns: int, secs: float) -> Any:
    lat: list[float] = []
    codes: dict[int, int] = {}
    it = iter(reqs)
    deadline = time.perf_counter() + secs

    async def worker(port: int) -> None:
        c = await connect(port)
        while time.perf_counter() < deadline:
            req = next(it, None)
            if req is None:
                return
            t0 = time.perf_counter()
            status = await c.send(req)
            lat.append(time.perf_counter() - t0)
            codes[status] = codes.get(status, 0) + 1
        c.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(ports[i % len(ports)]) for i in range(conns)))
    return summarize(lat, codes, time.perf_counter() - started)


async def open_loop(ports: list[int], reqs: list[bytes], rate: float, secs: float) -> Any:
    lat: list[float] = []
    codes: dict[int, int] = {}
    idle: list[list[Conn]] = [[await connect(p) for _ in range(16)] for p in ports]
    n = min(len(reqs), int(rate * secs))
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        scheduled = start + i / rate
        pool = idle[i % len(ports)]
        c = pool.pop() if pool else await connect(ports[i % len(ports)])
        status = await c.send(reqs[i])
        lat.append(time.perf_counter() - scheduled)  # from the schedule: no hidden stalls
        codes[status] = codes.get(status, 0) + 1
        pool.append(c)

    tasks = []
    for i in range(n):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return summarize(lat, codes, n / rate)


def load(ports: str, mode: str, arg: float, secs: float, start: int) -> None:
    """Child process: run one load phase, print its summary as JSON."""
    import uvloop

    port_list = [int(p) for p in ports.split(",")]
    count = int((arg if mode == "open" else 6000) * secs) + 1000
    reqs = build_requests(count, start)
    if mode == "closed":
        result = uvloop.run(closed_loop(port_list, reqs, int(arg), secs))
    else:
        result = uvloop.run(open_loop(port_list, reqs, arg, secs))
    print(json.dumps(result), flush=True)


def run_load(ports: list[int], mode: str, arg: float, secs: float, start: int) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE), "load", ",".join(map(str, ports)), mode, str(arg)]
    out = subprocess.run(
        [*cmd, str(secs), str(start)], capture_output=True, text=True, check=True, timeout=300
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------------- driver


@contextmanager
def database(engine: str, tmp: Path, pg_admin: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    from tillbridge.store.db import sync_url
    from tillbridge.store.schema import all_tables

    if engine == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
        eng = create_engine(sync_url(url))
        all_tables().create_all(eng)
        eng.dispose()
        yield url
        return
    name = f"tb_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_admin.rsplit("/", 1)[0] + "/" + name
    eng = create_engine(url)
    all_tables().create_all(eng)
    eng.dispose()
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def stored_rows(url: str) -> int:
    from sqlalchemy import create_engine, func, select

    from tillbridge.inbound.tables import webhook_inbox
    from tillbridge.store.db import sync_url

    eng = create_engine(sync_url(url))
    with eng.connect() as c:
        n = int(c.execute(select(func.count()).select_from(webhook_inbox)).scalar_one())
    eng.dispose()
    return n


def bench_engine(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d, database(engine, Path(d), args.pg_admin_url) as url:
        tmp = Path(d)
        config = tmp / "tillbridge.toml"
        config.write_text(
            '[erp.xpos]\ntype = "xentral"\nurl = "https://x.example"\n'
            'api_key = { env = "BENCH_XENTRAL_TOKEN" }\n'
            'webhook_secrets = [{ env = "BENCH_XENTRAL_KEY" }]\n'
            '[stores.s]\nname = "S"\n[registers.r]\nstore = "s"\nxentral_project = "1"\n'
        )
        env = {**os.environ, "BENCH_XENTRAL_KEY": KEY, "BENCH_XENTRAL_TOKEN": "t"}
        out: dict[str, Any] = {"engine": engine}
        for kind in ("bridge", "baseline"):
            with servers(kind, url, config, env) as ports:
                run_load(ports, "closed", 8, 1.0, 9_000_000)  # warm-up: imports, pools, caches
                out[f"{kind}_max"] = run_load(ports, "closed", args.connections, args.seconds, 0)
                out[f"{kind}_at_rate"] = run_load(ports, "open", args.rate, args.seconds, 5_000_000)
        oks = out["bridge_max"]["ok"] + out["bridge_at_rate"]["ok"]
        out["stored_rows"] = stored_rows(url)
        out["every_200_stored"] = out["stored_rows"] >= oks
        return out


def report(r: dict[str, Any], rate: float) -> None:
    b, base = r["bridge_max"], r["baseline_max"]
    br, baser = r["bridge_at_rate"], r["baseline_at_rate"]
    print(f"\n== {r['engine']} ==")
    print(
        f"bridge   max: {b['per_s']:>8.0f} webhooks/s  p50 {b['p50_ms']} ms  p99 {b['p99_ms']} ms"
        f"  codes {b['codes']}"
    )
    print(
        f"baseline max: {base['per_s']:>8.0f} req/s       p50 {base['p50_ms']} ms  "
        f"p99 {base['p99_ms']} ms"
    )
    print(f"ratio bridge/baseline (max throughput): {b['per_s'] / base['per_s']:.2f}")
    print(
        f"at {rate:.0f}/s offered: bridge p50 {br['p50_ms']} ms p99 {br['p99_ms']} ms "
        f"(max {br['max_ms']} ms, codes {br['codes']}); baseline p99 {baser['p99_ms']} ms"
    )
    print(f"stored rows {r['stored_rows']}, every 200 stored: {r['every_200_stored']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        a = sys.argv[2:]
        load(a[0], a[1], float(a[2]), float(a[3]), int(a[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN)
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="call gc.freeze() in the servers after start-up (not done by `tillbridge serve` yet)",
    )
    args = parser.parse_args()
    if args.gc_freeze:
        os.environ["BENCH_GC_FREEZE"] = "1"  # inherited by the server processes
    loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{platform.node()}: {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"load average before the run {loadavg:.2f} (other processes share these cores)"
    )
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    for engine in engines:
        report(bench_engine(engine, args), args.rate)


if __name__ == "__main__":
    main()
