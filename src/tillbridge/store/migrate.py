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
from tillbridge.store.db import ensure_sqlite_dir, sync_url

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

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_status(url: str) -> SchemaStatus:
    """Which revision the database is at, and which the code expects."""
    ensure_sqlite_dir(url)
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
    finally:
        engine.dispose()
    return schema_status(url)
