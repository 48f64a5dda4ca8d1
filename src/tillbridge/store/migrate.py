"""Schema migrations (Alembic) behind ``tillbridge db upgrade`` and ``tillbridge db current``.

The bridge never creates or changes tables any other way. ``serve`` and ``worker`` call
:func:`schema_status` and refuse to start on an out-of-date schema, naming the command to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from tillbridge.errors import SchemaOutOfDate, StoreUnavailable
from tillbridge.store.db import ensure_sqlite_dir, sqlite_path, sync_url

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    current: str | None
    head: str | None
    #: A SQLite database whose file does not exist (nothing was created to find that out).
    missing_file: Path | None = None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_status(url: str) -> SchemaStatus:
    """Which revision the database is at, and which the code expects.

    Only looks: a SQLite file that does not exist is reported as ``missing_file`` (neither its
    directory nor an empty database is created as a side effect of asking).
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return SchemaStatus(None, head_revision(), missing_file=path)
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise StoreUnavailable(detail=str(exc.orig).splitlines()[0]) from exc
    finally:
        engine.dispose()
    return SchemaStatus(current, head_revision())


def require_current(url: str) -> None:
    """Raise :class:`SchemaOutOfDate` (with the command to run) unless the schema is current."""
    status = schema_status(url)
    if status.missing_file is not None:
        raise SchemaOutOfDate(
            f"the SQLite database {status.missing_file.resolve()} does not exist yet: run "
            "`tillbridge db upgrade` to create it (if you expected an existing database, check "
            "TILLBRIDGE_DATABASE_URL)",
            current=None,
            head=status.head,
        )
    if not status.up_to_date:
        raise SchemaOutOfDate(
            f"the database schema is at {status.current or 'nothing (empty database)'}, "
            f"the code needs {status.head}: run `tillbridge db upgrade`",
            current=status.current,
            head=status.head,
        )


def upgrade(url: str, revision: str = "head") -> SchemaStatus:
    """Apply every pending migration (idempotent: nothing happens when already current)."""
    ensure_sqlite_dir(url)
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except OperationalError as exc:
        if exc.connection_invalidated or "connect" in str(exc.orig).lower():
            raise StoreUnavailable(detail=str(exc.orig).splitlines()[0]) from exc
        raise
    finally:
        engine.dispose()
    return schema_status(url)
