"""An async SQLAlchemy dialect for SQLite that calls :mod:`sqlite3` on the event loop's thread.

Why: aiosqlite runs every call (execute, fetch, commit) on a helper thread and wakes the event
loop for each result. For the bridge's short transactions (five to eight statements of a few
microseconds each) that hand-off *is* the cost: about 0.5 ms of CPU per statement, a 4x slowdown
of ``POST /v1/payments`` measured in ``bench/api_payments.py``.

Why it is safe here:

- WAL mode: readers never block and are never blocked.
- Writers are serialised in-process by :meth:`tillbridge.store.db.Database.write` (an asyncio
  lock) *before* ``BEGIN IMMEDIATE``, so a statement never waits for a writer of this process.
- Another process holding the write lock (a CLI command, a second worker on one host) makes
  ``BEGIN IMMEDIATE`` wait in SQLite's busy handler, blocking this event loop for at most the
  length of that other transaction, which is short everywhere in the bridge; the busy timeout
  bounds it.

The dialect is registered as ``sqlite+tbinline``; :func:`tillbridge.store.db.async_url` selects it
for every ``sqlite://`` URL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from sqlalchemy.connectors.asyncio import (
    AsyncAdapt_dbapi_connection,
    AsyncAdapt_dbapi_cursor,
    AsyncAdapt_dbapi_module,
)
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool, StaticPool


class _InlineCursor:
    """The awaitable cursor interface SQLAlchemy's adapter expects, over a plain sqlite3 cursor."""

    __slots__ = ("_c",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._c = cursor

    @property
    def description(self) -> Any:
        return self._c.description

    @property
    def rowcount(self) -> int:
        return self._c.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._c.lastrowid

    @property
    def arraysize(self) -> int:
        return self._c.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._c.arraysize = value

    async def execute(self, operation: str, parameters: Any = ()) -> _InlineCursor:
        self._c.execute(operation, parameters)
        return self

    async def executemany(self, operation: str, seq: Sequence[Any]) -> _InlineCursor:
        self._c.executemany(operation, seq)
        return self

    async def fetchone(self) -> Any:
        return self._c.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._c.fetchmany(size if size is not None else self._c.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._c.fetchall()

    async def close(self) -> None:
        self._c.close()

    async def nextset(self) -> None:
        return None

    async def __aenter__(self) -> _InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._c.close()

    def __aiter__(self) -> _InlineCursor:
        return self

    async def __anext__(self) -> Any:
        row = self._c.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row


class _InlineConnection:
    """Awaitable connection methods over a plain sqlite3 connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def cursor(self) -> _InlineCursor:
        return _InlineCursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self._conn.close()


class AsyncAdaptInlineCursor(AsyncAdapt_dbapi_cursor):
    __slots__ = ()


class AsyncAdaptInlineConnection(AsyncAdapt_dbapi_connection):
    """SQLAlchemy's async connection adapter, with the sqlite3 extras the SQLite dialect uses."""

    _cursor_cls = AsyncAdaptInlineCursor
    __slots__ = ()

    @property
    def _raw(self) -> sqlite3.Connection:
        conn: sqlite3.Connection = self._connection._conn
        return conn

    @property
    def isolation_level(self) -> str | None:
        return self._raw.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self._raw.isolation_level = value

    def create_function(self, *args: Any, **kw: Any) -> None:
        self._raw.create_function(*args, **kw)

    def terminate(self) -> None:
        self._raw.close()

    def cursor(self, server_side: bool = False) -> AsyncAdapt_dbapi_cursor:
        # Rows are fetched eagerly either way; sqlite3 holds them in-process already.
        return self._cursor_cls(self)


class _InlineDBAPI(AsyncAdapt_dbapi_module):
    """The DB-API module face of the dialect: sqlite3's exceptions and types, our connect."""

    has_stop = True  # "terminate" is supported: it closes the sqlite3 connection

    def __init__(self) -> None:
        super().__init__(sqlite3, dbapi_module=sqlite3)
        self.sqlite = sqlite3
        self.paramstyle = "qmark"
        for name in (
            "DatabaseError",
            "Error",
            "IntegrityError",
            "NotSupportedError",
            "OperationalError",
            "ProgrammingError",
            "sqlite_version",
            "sqlite_version_info",
            "PARSE_COLNAMES",
            "PARSE_DECLTYPES",
            "Binary",
            "InterfaceError",
            "InternalError",
            "DataError",
            "Warning",
        ):
            setattr(self, name, getattr(sqlite3, name))

    @property
    def exceptions_module(self) -> ModuleType:
        return sqlite3

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdaptInlineConnection:
        kw.pop("async_creator_fn", None)
        raw = sqlite3.connect(*arg, **kw)
        return AsyncAdaptInlineConnection(self, _InlineConnection(raw))  # type: ignore[arg-type]


class SQLiteDialectInline(SQLiteDialect_aiosqlite):
    """``sqlite+tbinline``: the aiosqlite dialect's SQL, executed inline (see module docstring)."""

    driver = "tbinline"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return _InlineDBAPI()

    @classmethod
    def get_pool_class(cls, url: Any) -> type[Pool]:
        if cls._is_url_file_db(url):
            return AsyncAdaptedQueuePool
        return StaticPool

    def retrieve_dbapi_version(self, dbapi: Any) -> Any:
        return None

    def get_driver_connection(self, connection: Any) -> Any:
        return connection._connection._conn

    def do_terminate(self, dbapi_connection: Any) -> None:
        dbapi_connection.terminate()


registry.register("sqlite.tbinline", __name__, "SQLiteDialectInline")
