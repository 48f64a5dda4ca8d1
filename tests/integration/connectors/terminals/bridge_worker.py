"""A real bridge worker process with one ZVT terminal, for the kill -9 test.

``python bridge_worker.py DATABASE_URL HOST PORT`` runs the bridge's own job registry (the same
as ``tillbridge worker``) with terminal ``lane1`` at ``HOST:PORT`` and a 2 s job lease, so a
killed worker's terminal job comes back quickly. Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

from tillbridge.app.jobs import build_registry
from tillbridge.app.runtime import build_runtime
from tillbridge.config import MerchantConfig
from tillbridge.connectors.terminals.zvt.connector import ZvtTerminalConfig
from tillbridge.queue import Worker
from tillbridge.settings import Settings


async def main(url: str, host: str, port: int) -> None:
    config = MerchantConfig(terminals={"lane1": ZvtTerminalConfig(host=host, port=port)})
    rt = build_runtime(Settings(database_url=url, log_level="warning"), config)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    worker = Worker(
        rt.db,
        build_registry(rt),
        lease=timedelta(seconds=2),
        poll_interval=0.02,
        max_poll_interval=0.1,
        shutdown_timeout=5,
    )
    try:
        await worker.run(stop)
    finally:
        await rt.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
