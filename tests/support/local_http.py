"""Real HTTP servers on 127.0.0.1 for tests: an ASGI app under uvicorn, in the test's event loop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


def listening_socket() -> socket.socket:
    """A non-blocking socket already listening on 127.0.0.1 with a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn (h11, no lifespan, no logging config); yield its base URL.

    The socket is listening before the server starts, so clients can connect at once.
    """
    sock = listening_socket()
    config = uvicorn.Config(app, lifespan="off", log_config=None, http="h11", ws="none")
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await server.shutdown(sockets=[sock])
