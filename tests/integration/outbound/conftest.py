"""Real local servers on 127.0.0.1, port 0, in the test's own event loop.

The listening socket is bound before the server starts, so a client can connect at once (the
kernel queues the connection): no sleeping or polling to wait for "server ready".
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from support.local_http import listening_socket, serve_asgi

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve_raw(handler: Handler) -> AsyncIterator[str]:
    """A raw TCP server for misbehaviour HTTP servers cannot be told to do."""
    server = await asyncio.start_server(handler, sock=listening_socket())
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A port nothing listens on: bound, then closed (connection refused)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def servers() -> Any:
    class Servers:
        asgi = staticmethod(serve_asgi)
        raw = staticmethod(serve_raw)
        refused_port = staticmethod(closed_port)

    return Servers
