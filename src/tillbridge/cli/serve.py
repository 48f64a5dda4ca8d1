"""``tillbridge serve`` and ``tillbridge worker``: running the bridge, and what they run.

``serve`` is the embedded default: one process runs the HTTP API (uvicorn), the job worker and
the periodic scheduler on one event loop. In production, run ``serve --no-worker`` behind a load
balancer and as many ``tillbridge worker`` processes as needed (PostgreSQL only: SQLite is one
host, one worker).

:func:`run_server` and :func:`run_worker_only` are what the commands run; :func:`start_worker`
starts a worker on an existing runtime (``serve`` and ``demo`` use it). Both refuse a database
whose schema is not current, with the command that fixes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from tillbridge.cli.common import handle_errors, run_async, settings

if TYPE_CHECKING:
    import uvicorn

    from tillbridge.app.runtime import Runtime
    from tillbridge.settings import Settings


# commands ----------------------------------------------------------------------------------------


@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="listen port (0: any free port)")
    ] = None,
    no_worker: Annotated[
        # One flag, not typer's "--no-worker / --no-no-worker" pair.
        bool, typer.Option("--no-worker", help="API only; run `tillbridge worker` apart")
    ] = False,
) -> None:
    """Run the API, with the job worker and scheduler in the same process (embedded default)."""
    s = settings()
    # `is None`, not `or`: --port 0 asks for an ephemeral port (the banner says which one).
    run_async(
        run_server(
            s,
            host=host if host is not None else s.host,
            port=port if port is not None else s.port,
            worker=not no_worker,
        )
    )


@handle_errors
def worker(
    concurrency: Annotated[int | None, typer.Option(help="jobs run at once")] = None,
) -> None:
    """Run a job worker (and the periodic scheduler) without the API."""
    s = settings()
    if concurrency is not None:
        s = s.model_copy(update={"worker_concurrency": concurrency})
    run_async(run_worker_only(s))


# what they run -----------------------------------------------------------------------------------


def _http_server(config: uvicorn.Config, bound: asyncio.Event) -> uvicorn.Server:
    """uvicorn without its own signal handling (a SIGTERM is a normal, graceful stop: exit 0)
    that sets ``bound`` once it listens (or once startup failed and ``should_exit`` is set).

    The subclass is made here, not at module level, so that importing this module (every
    ``tillbridge`` command does, to register ``serve``) does not import uvicorn.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            bound.set()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return _Server(config)


def start_worker(rt: Runtime, stop: asyncio.Event) -> asyncio.Task[None]:
    """Run the job worker of ``rt`` until ``stop`` is set."""
    from tillbridge.app.jobs import build_registry
    from tillbridge.queue import Worker

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
        f"  try:        curl {where}/healthz   (the API: {where}/docs)",
    ]
    lines += [f"  warning:    {line}" for line in secret_warnings(rt)]
    print("\n".join(lines), file=sys.stderr, flush=True)


def secret_warnings(rt: Runtime) -> list[str]:
    """One line per secret that cannot be read, with what it stops (the rest keeps working)."""
    out = []
    for where, what in rt.config.secret_problems():
        section, name, *_ = where.split(".")
        if section in ("terminals", "connectors", "providers"):
            effect = f"payments on {name} are refused until it is provided"
        elif section == "subscribers":
            effect = f"deliveries to subscriber {name} cannot be signed"
        elif where.split(".")[2:3] == ["webhook_secrets"]:
            effect = (
                f"webhooks of {name} are answered 503 (the sender retries) until it is provided"
            )
        else:
            effect = f"{name} cannot use it until it is provided"
        out.append(f"{where}: {what}: {effect}")
    return out


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def run_server(settings: Settings, *, host: str, port: int, worker: bool = True) -> None:
    """Serve the API (and, by default, the worker) until SIGINT or SIGTERM."""
    import structlog
    import uvicorn

    from tillbridge.api.app import create_app
    from tillbridge.app.runtime import build_runtime
    from tillbridge.observability.logging import configure_logging
    from tillbridge.store.migrate import require_current

    require_current(settings.database_url)
    rt = build_runtime(settings)
    configure_logging(settings, redactor=rt.redactor)
    for warning in secret_warnings(rt):
        structlog.get_logger("tillbridge.serve").warning(
            "config.secret_unavailable", problem=warning
        )
    app = create_app(rt)
    # Everything built so far lives as long as the process: move it out of the collector's
    # reach so full collections stay short (measurably lower p99 under load).
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
    )
    bound = asyncio.Event()
    server = _http_server(config, bound)

    def request_exit() -> None:
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, request_exit)
    stop = asyncio.Event()
    worker_task = start_worker(rt, stop) if worker else None
    serving = asyncio.create_task(server.serve(), name="tillbridge-http")
    try:
        # Announce only once the socket is bound, so whoever reads the banner can connect.
        bound_wait = asyncio.create_task(bound.wait())
        await asyncio.wait({bound_wait, serving}, return_when=asyncio.FIRST_COMPLETED)
        bound_wait.cancel()
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
    import structlog

    from tillbridge.app.runtime import build_runtime
    from tillbridge.observability.logging import configure_logging
    from tillbridge.store.migrate import require_current

    require_current(settings.database_url)
    rt = build_runtime(settings)
    configure_logging(settings, redactor=rt.redactor)
    for warning in secret_warnings(rt):
        structlog.get_logger("tillbridge.worker").warning(
            "config.secret_unavailable", problem=warning
        )
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
