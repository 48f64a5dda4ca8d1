"""Running the bridge: the API with an in-process worker (``serve``) or a worker alone.

``serve`` is the embedded default: one process runs the HTTP API (uvicorn), the job worker and
the periodic scheduler on one event loop. In production, run ``serve --no-worker`` behind a load
balancer and as many ``tillbridge worker`` processes as needed (PostgreSQL only: SQLite is one
host, one worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
from collections.abc import Iterator

import uvicorn

from tillbridge.api.app import create_app
from tillbridge.app.jobs import build_registry
from tillbridge.app.runtime import Runtime, build_runtime
from tillbridge.observability.logging import configure_logging
from tillbridge.queue import Worker
from tillbridge.settings import Settings
from tillbridge.store.migrate import require_current


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: a SIGTERM is a normal, graceful stop (exit 0)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.bound = asyncio.Event()

    def request_exit(self) -> None:
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.bound.set()  # listening now (or startup failed and should_exit is set)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def start_worker(rt: Runtime, stop: asyncio.Event) -> asyncio.Task[None]:
    """Run the job worker of ``rt`` until ``stop`` is set."""
    worker = Worker(rt.db, build_registry(rt), concurrency=rt.settings.worker_concurrency)
    return asyncio.create_task(worker.run(stop), name="tillbridge-worker")


def _banner(rt: Runtime, host: str, port: int, worker: bool) -> None:
    where = f"http://{host}:{port}"
    mode = "API + worker + scheduler" if worker else "API only"
    lines = [
        f"tillbridge listening on {where} ({mode})",
        f"  database:   {_safe_url(rt.settings.database_url)}",
        f"  config:     {rt.settings.config}"
        + (
            "" if rt.settings.config.exists() else " (not found: built-in sandbox connector 'fake')"
        ),
        f"  connectors: {', '.join(sorted(rt.connectors)) or 'none'}",
        "  API key:    .venv/bin/tillbridge apikey create --name me --scope admin",
        f"  try:        curl {where}/healthz",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def run_server(settings: Settings, *, host: str, port: int, worker: bool = True) -> None:
    """Serve the API (and, by default, the worker) until SIGINT or SIGTERM."""
    require_current(settings.database_url)
    rt = build_runtime(settings)
    configure_logging(settings, redactor=rt.redactor)
    app = create_app(rt)
    # Everything built so far lives as long as the process: move it out of the collector's
    # reach so full collections stay short (measurably lower p99 under load).
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, server.request_exit)
    stop = asyncio.Event()
    worker_task = start_worker(rt, stop) if worker else None
    serving = asyncio.create_task(server.serve(), name="tillbridge-http")
    try:
        # Announce only once the socket is bound, so whoever reads the banner can connect.
        bound = asyncio.create_task(server.bound.wait())
        await asyncio.wait({bound, serving}, return_when=asyncio.FIRST_COMPLETED)
        bound.cancel()
        if server.started:
            addr = server.servers[0].sockets[0].getsockname() if server.servers else (host, port)
            _banner(rt, host, int(addr[1]), worker)
        await serving
    finally:
        stop.set()
        if worker_task is not None:
            await worker_task
        await rt.close()


async def run_worker_only(settings: Settings) -> None:
    """Run a worker (with the periodic scheduler) until SIGINT or SIGTERM."""
    require_current(settings.database_url)
    rt = build_runtime(settings)
    configure_logging(settings, redactor=rt.redactor)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"tillbridge worker on {_safe_url(settings.database_url)}", file=sys.stderr, flush=True)
    try:
        await start_worker(rt, stop)
    finally:
        await rt.close()
