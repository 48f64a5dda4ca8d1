"""Database engine and transactions, the same API on SQLite and PostgreSQL.

Use :meth:`Database.write` for any transaction that writes: on SQLite it begins with
``BEGIN IMMEDIATE`` so a read-then-write transaction takes the write lock up front instead of
failing with "database is locked" half-way (the stdlib driver's deferred ``BEGIN`` would). Use
:meth:`Database.read` for read-only work. Both map "cannot reach the database" to
:class:`~tillbridge.errors.StoreUnavailable`, so the API answers 503 instead of 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tillbridge.errors import ConfigError, SchemaOutOfDate, StoreUnavailable
from tillbridge.store import sqlite_inline as _sqlite_inline  # noqa: F401  (registers the dialect)

#: How long a SQLite writer waits for the lock before giving up (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 10_000


def async_url(url: str) -> str:
    """Map a user-facing URL (``sqlite:///...``, ``postgresql://...``) to its async driver."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        u = u.set(drivername="sqlite+tbinline")
    elif backend in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The synchronous twin of :func:`async_url` (used by Alembic)."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        u = u.set(drivername="sqlite")
    elif backend in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL (None: not SQLite, or in memory)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        return Path(u.database).expanduser()
    return None


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite database file (``./var/`` on a fresh checkout).

    Raises :class:`~tillbridge.errors.ConfigError` naming the directory and the reason when it
    cannot be created (no permission, a file in the way), never an ``OSError`` traceback.
    """
    path = sqlite_path(url)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the directory {path.parent.resolve()} for the SQLite database "
            f"{path.name}: {exc.strerror or exc}; check TILLBRIDGE_DATABASE_URL"
        ) from None


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN away from the driver; we emit it ourselves below (SQLAlchemy's recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("tb_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """An async engine plus the two kinds of transaction the bridge uses.

    ``Database(url)`` does not connect; the first transaction does.
    """

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        ensure_sqlite_dir(url)
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": False}
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "postgresql":
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_timeout=10)
            kwargs["connect_args"] = {"connect_timeout": 5}
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        # SQLite admits one writer at a time; queue this process's writers here, before
        # BEGIN IMMEDIATE, instead of letting each spin in SQLite's busy handler.
        self._writers: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._writer_task: asyncio.Task[Any] | None = None
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: commits on success, rolls back on any exception."""
        if not self.is_sqlite:
            async with self._begin("IMMEDIATE") as conn:
                yield conn
            return
        lock = self._writer_lock()
        task = asyncio.current_task()
        if lock.locked() and self._writer_task is task:
            # The same task asking for a second write transaction would wait for itself.
            raise RuntimeError("nested Database.write() in one task: pass the connection down")
        async with lock:
            self._writer_task = task
            try:
                async with self._begin("IMMEDIATE") as conn:
                    yield conn
            finally:
                self._writer_task = None

    def _writer_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._writers is None or self._writers[0] is not loop:
            # An asyncio.Lock belongs to one event loop; tests and CLI commands start new ones.
            self._writers = (loop, asyncio.Lock())
        return self._writers[1]

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (deferred on SQLite: takes no write lock)."""
        async with self._begin("DEFERRED") as conn:
            yield conn

    @asynccontextmanager
    async def _begin(self, mode: str) -> AsyncIterator[AsyncConnection]:
        try:
            conn = await self.engine.connect()
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StoreUnavailable(detail=_short(exc)) from exc
        try:
            if self.is_sqlite:
                conn = await conn.execution_options(tb_begin=mode)
            try:
                async with conn.begin():
                    yield conn
            except (OperationalError, ProgrammingError) as exc:
                if _is_missing_schema(exc):
                    raise SchemaOutOfDate(
                        "the database has no tillbridge tables (or not all of them): run "
                        "`tillbridge db upgrade`",
                        detail=_short(exc),
                    ) from exc
                if isinstance(exc, OperationalError) and _is_unavailable(exc):
                    raise StoreUnavailable(detail=_short(exc)) from exc
                raise
        finally:
            await conn.close()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _is_missing_schema(exc: DBAPIError) -> bool:
    """SQLite's "no such table", or PostgreSQL's undefined table (SQLSTATE 42P01)."""
    if getattr(exc.orig, "sqlstate", None) == "42P01":
        return True
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return text.startswith("no such table")


def _is_unavailable(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    markers = ("database is locked", "connection", "server closed", "terminating", "timeout")
    return any(m in text for m in markers)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
