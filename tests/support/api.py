"""Helpers for the API acceptance tests.

The API under test is a real runtime over a real database (SQLite and PostgreSQL), driven
in-process through ``httpx2.ASGITransport``. Only the counterpart is a fake (the shipped
``FakeConnector``); everything of ours is the real thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.sql.schema import Table

from tillbridge import testing
from tillbridge.app.runtime import Runtime
from tillbridge.services import apikeys
from tillbridge.store.db import Database
from tillbridge.store.tables import idempotency_keys, payments

VALID_BODY: dict[str, Any] = {
    "amount": 1234,
    "currency": "EUR",
    "reference": "SO042",
    "connector": "fake",
    "metadata": {"order": "SO042", "lines": 3},
}


def client_for(app: FastAPI) -> httpx2.AsyncClient:
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx2.AsyncClient(transport=transport, base_url="http://bridge.test")


async def count(db: Database, table: Table) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


@dataclass
class Api:
    """A running API plus keys of every kind."""

    client: httpx2.AsyncClient
    runtime: Runtime
    app: FastAPI
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str = "writer", idem: str | None = None, **extra: str) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.keys[who]}", **extra}
        if idem is not None:
            h["Idempotency-Key"] = idem
        return h

    async def create(
        self, body: dict[str, Any] | None = None, idem: str = "k-1", who: str = "writer"
    ) -> httpx2.Response:
        return await self.client.post(
            "/v1/payments",
            json=VALID_BODY if body is None else body,
            headers=self.headers(who, idem),
        )

    async def payments(self) -> int:
        return await count(self.runtime.db, payments)

    async def idempotency_rows(self) -> int:
        return await count(self.runtime.db, idempotency_keys)


async def make_keys(db: Database) -> tuple[dict[str, str], dict[str, str]]:
    wanted = {
        "writer": ["payments:read", "payments:write"],
        "writer2": ["payments:read", "payments:write"],
        "reader": ["payments:read"],
        "write_only": ["payments:write"],
        "admin": ["admin"],
    }
    tokens: dict[str, str] = {}
    ids: dict[str, str] = {}
    async with db.write() as conn:
        for name, scopes in wanted.items():
            record, token = await apikeys.create_key(conn, name, scopes)
            tokens[name], ids[name] = token, record.id
    return tokens, ids


assert_problem = testing.assert_problem
