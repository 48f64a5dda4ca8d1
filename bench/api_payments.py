"""Benchmark: POST /v1/payments against a real uvicorn process (SQLite file, fake connector).

    .venv/bin/python bench/api_payments.py [--seconds 6] [--rate 500] [--connections 32]
        [--profile FILE] [--ceiling]

Starts ``bench/api_server.py`` (one process) on 127.0.0.1 and drives it from this process:

``--ceiling`` sends ``GET /healthz`` instead (no auth, no database): the floor cost of
uvicorn + FastAPI + our middleware on this machine, to tell framework cost from our own.

1. warm-up (2 s);
2. **max throughput**: closed loop, ``--connections`` keep-alive connections each sending the
   next request as soon as the previous answer arrived; reports requests/s and latencies;
3. **fixed rate**: open loop at half the measured maximum, then at ``--rate`` requests/s;
   latency is measured from each request's *scheduled* send time, so a stalled server cannot
   hide behind a stalled client (coordinated omission). Requests still unanswered 5 s after a
   phase are reported as late (an overloaded server), so a run stays under about 30 s.

Every request has a fresh ``Idempotency-Key`` and must answer 201; the payment rows are counted
afterwards to prove each 201 was a stored payment. The client speaks HTTP/1.1 over raw asyncio
streams instead of a full HTTP client: on 2 cores the client shares the CPU with the server, and
a heavier client would measure itself. Targets (2 cores): >= 1,500 req/s; p99 <= 50 ms at
500 req/s. Run by hand; never a timed test.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, func, select

from tillbridge.store.tables import payments

BODY = json.dumps(
    {
        "amount": 1234,
        "currency": "EUR",
        "reference": "SO042",
        "connector": "fake",
        "metadata": {"register": "r1"},
    }
).encode()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cpus {cpu}, Python {platform.python_version()}"


#: How long the fixed-rate phase waits for answers after its last request was due.
GRACE_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    #: Requests of a fixed-rate phase still unanswered after the grace period.
    late: int = 0

    def add(self, status: int, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")


class Conn:
    """One keep-alive HTTP/1.1 connection sending POST /v1/payments."""

    def __init__(self, port: int, token: str, *, ceiling: bool = False) -> None:
        self.port = port
        self.ceiling = ceiling
        self.head = (
            "POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\nIdempotency-Key: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, key: str) -> int:
        assert self.reader is not None and self.writer is not None
        if self.ceiling:  # the framework's floor cost: no auth, no database
            self.writer.write(
                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Key: " + key.encode() + b"\r\n\r\n"
            )
        else:
            self.writer.write(self.head + key.encode() + b"\r\n\r\n" + BODY)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Keys:
    def __init__(self, run: str) -> None:
        self.run, self.n = run, 0

    def next(self) -> str:
        self.n += 1
        return f"{self.run}-{self.n}"


async def closed_loop(conns: list[Conn], keys: Keys, seconds: float) -> tuple[Stats, float]:
    stats = Stats()
    deadline = time.perf_counter() + seconds

    async def loop(c: Conn) -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            status = await c.post(keys.next())
            stats.add(status, time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    return stats, time.perf_counter() - start


async def open_loop(conns: list[Conn], keys: Keys, rate: float, seconds: float) -> Stats:
    stats = Stats()
    free: asyncio.Queue[Conn] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    start = time.perf_counter() + 0.05
    total = int(rate * seconds)

    async def one(scheduled: float) -> None:
        c = await free.get()
        try:
            status = await c.post(keys.next())
        finally:
            free.put_nowait(c)
        stats.add(status, time.perf_counter() - scheduled)

    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    # An overloaded server would make this phase run on for long: stop waiting after a grace
    # period and count what is still queued as late (status 0).
    _, late = await asyncio.wait(tasks, timeout=GRACE_S)
    for task in late:
        task.cancel()
    stats.late = len(late)
    return stats


def report(name: str, stats: Stats, elapsed: float | None, cpu: float) -> None:
    n = len(stats.latencies)
    rate = f"{n / elapsed:7.0f} req/s  " if elapsed else ""
    print(
        f"{name:<16} {n:6d} requests  {rate}p50 {stats.pct(50):6.1f} ms  "
        f"p99 {stats.pct(99):6.1f} ms  max {stats.pct(100):6.1f} ms  "
        f"server CPU {cpu / max(n, 1) * 1e6:5.0f} us/req  statuses {stats.statuses}"
    )


async def drive(port: int, token: str, args: argparse.Namespace, server_pid: int) -> int:
    conns = [Conn(port, token, ceiling=args.ceiling) for _ in range(args.connections)]
    await asyncio.gather(*(c.open() for c in conns))
    keys = Keys(f"bench-{os.getpid()}")
    await closed_loop(conns, keys, 2.0)  # warm-up: caches, pools, JIT-less Python warm paths

    cpu0 = cpu_seconds(server_pid)
    stats, elapsed = await closed_loop(conns, keys, args.seconds)
    report("max throughput", stats, elapsed, cpu_seconds(server_pid) - cpu0)
    want = 200 if args.ceiling else 201
    bad = len(stats.latencies) - stats.statuses.get(want, 0)

    max_rate = len(stats.latencies) / elapsed
    # Half the maximum first: an overloaded phase leaves a backlog in the server.
    for rate in (round(max_rate / 2), args.rate):
        cpu0 = cpu_seconds(server_pid)
        stats = await open_loop(conns, keys, rate, args.seconds)
        report(f"at {rate:.0f} req/s", stats, None, cpu_seconds(server_pid) - cpu0)
        bad += len(stats.latencies) - stats.statuses.get(want, 0)
        if stats.late:
            print(f"{'':16} overloaded: {stats.late} more still unanswered {GRACE_S:.0f} s later")
            # Their connections are mid-exchange: start the next phase on fresh ones.
            for c in conns:
                c.close()
            conns = [Conn(port, token, ceiling=args.ceiling) for _ in range(args.connections)]
            await asyncio.gather(*(c.open() for c in conns))
    for c in conns:
        c.close()
    return bad


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # The client shares 2 cores with the server: uvloop (shipped by uvicorn[standard]) keeps
    # its own cost low.
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--profile", type=Path, default=None, help="cProfile the server into FILE")
    ap.add_argument(
        "--ceiling", action="store_true", help="GET /healthz instead: the stack's floor cost"
    )
    args = ap.parse_args()
    print(f"bench/api_payments.py on {machine()}")
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        port = free_port()
        cmd = [sys.executable, str(Path(__file__).with_name("api_server.py")),
               "--db", str(db), "--port", str(port)]  # fmt: skip
        if args.profile:
            cmd += ["--profile", str(args.profile.resolve())]
        proc = subprocess.Popen(cmd)
        try:
            wait_ready(port, proc)
            token = db.with_suffix(".key").read_text()
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                bad = runner.run(drive(port, token, args, proc.pid))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        eng = create_engine(f"sqlite:///{db}")
        with eng.connect() as c:
            rows = c.execute(select(func.count()).select_from(payments)).scalar_one()
        eng.dispose()
        print(f"payments stored: {rows}; unexpected answers: {bad}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
