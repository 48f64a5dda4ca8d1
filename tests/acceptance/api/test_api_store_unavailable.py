"""The database goes away: the API answers 503 with Retry-After, and nothing is half-written."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx2
import pytest
from sqlalchemy.engine import make_url

from support.api import VALID_BODY, assert_problem, client_for, count, make_keys
from tillbridge import testing
from tillbridge.api import create_app
from tillbridge.store.db import Database
from tillbridge.store.tables import idempotency_keys, payments

pytestmark = pytest.mark.anyio


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def assert_503_everywhere(api_client: httpx2.AsyncClient, runtime_url: str) -> None:
    headers = {"Authorization": "Bearer tb_0123456789ab_" + "A" * 43, "Idempotency-Key": "k"}
    for r in (
        await api_client.post("/v1/payments", json=VALID_BODY, headers=headers),
        await api_client.get("/v1/payments", headers=headers),
        await api_client.get("/readyz"),
    ):
        problem = assert_problem(r, 503, "store_unavailable")
        assert int(r.headers["retry-after"]) >= 1
        assert runtime_url not in r.text and "details" not in problem
    assert (await api_client.get("/healthz")).status_code == 200  # alive, just not ready


@pytest.mark.postgres
async def test_postgres_on_a_closed_port_is_503() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere"
    runtime = testing.make_runtime(url)
    async with client_for(create_app(runtime)) as client:
        await assert_503_everywhere(client, url)
    await runtime.close()


async def test_sqlite_file_that_cannot_be_opened_is_503(tmp_path: Path) -> None:
    where = tmp_path / "a-directory.db"
    where.mkdir()  # a directory where the database file should be: cannot be opened, even as root
    url = f"sqlite:///{where}"
    runtime = testing.make_runtime(url)
    async with client_for(create_app(runtime)) as client:
        await assert_503_everywhere(client, url)
    await runtime.close()


class CuttableProxy:
    """A TCP proxy in front of PostgreSQL that the test can cut, like a failing network."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()
        await self.server.wait_closed()


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_database_lost_mid_life_is_503_and_nothing_written(db_url: str) -> None:
    real = make_url(db_url)
    proxy = CuttableProxy(real.host or "127.0.0.1", real.port or 5432)
    port = await proxy.start()
    via_proxy = real.set(port=port, host="127.0.0.1").render_as_string(hide_password=False)
    runtime = testing.make_runtime(via_proxy)
    tokens, _ = await make_keys(runtime.db)
    app = create_app(runtime, auth_cache_ttl_s=3600)
    headers = {"Authorization": f"Bearer {tokens['writer']}"}
    async with client_for(app) as client:
        assert (await client.get("/v1/payments", headers=headers)).status_code == 200  # key cached
        await proxy.cut()
        for attempt in range(2):  # the pooled connection dies first, then connecting fails
            r = await client.post(
                "/v1/payments",
                json=VALID_BODY,
                headers={**headers, "Idempotency-Key": f"k{attempt}"},
            )
            assert_problem(r, 503, "store_unavailable")
            assert "retry-after" in r.headers
    await runtime.close()
    direct = Database(db_url)
    assert await count(direct, payments) == 0
    assert await count(direct, idempotency_keys) == 0
    await direct.dispose()
