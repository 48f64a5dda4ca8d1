"""The server side of ``bench/api_payments.py``: one uvicorn process serving the real API.

    .venv/bin/python bench/api_server.py --db PATH --port N [--profile FILE]

Builds a runtime over the SQLite file (schema created from metadata if empty) with the fake
connector, writes ``<db>.key`` with a fresh API key (payments:read + payments:write), and
serves on 127.0.0.1 with uvloop and httptools, access log off (as a production deployment
behind a proxy would run). ``--profile`` runs the server under cProfile and dumps the stats
to FILE on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from sqlalchemy import create_engine

from tillbridge.api import create_app
from tillbridge.app.registry import default_registry
from tillbridge.app.runtime import Runtime, build_runtime
from tillbridge.services import apikeys
from tillbridge.settings import Settings
from tillbridge.store.schema import all_tables

REGISTRY = default_registry()


def build(db_path: Path) -> Runtime:
    url = f"sqlite:///{db_path}"
    eng = create_engine(url)
    all_tables().create_all(eng)
    eng.dispose()
    return build_runtime(Settings(database_url=url, redact_values=[]), REGISTRY.default_config())


async def make_key(runtime: Runtime, out: Path) -> None:
    async with runtime.db.write() as conn:
        _, token = await apikeys.create_key(conn, "bench", ["payments:read", "payments:write"])
    out.write_text(token)
    # The pool's connections belong to this short-lived loop; uvicorn runs its own.
    await runtime.db.dispose()


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after shutting down, which would skip the profile dump; this
    server leaves signals to ``main`` instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--profile", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runtime = build(args.db)
    asyncio.run(make_key(runtime, args.db.with_suffix(".key")))
    app = create_app(runtime)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = _Server(config)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(server, "should_exit", True))
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        server.run()
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(args.profile))


if __name__ == "__main__":
    main()
