"""SQL that each engine spells its own way, written once: insert-or-ignore.

"Insert this row unless its unique key exists" is ``INSERT ... ON CONFLICT DO NOTHING`` on both
PostgreSQL and SQLite, but SQLAlchemy builds it from each dialect's own ``insert`` construct, so
every caller used to pick the dialect by hand. :func:`insert_or_ignore` builds the statement for
both engines once; :meth:`InsertOrIgnore.on` picks the one for a connection.

Why not catch the ``IntegrityError`` of a plain insert: on PostgreSQL a failed statement aborts
the whole transaction, and these inserts run inside the caller's business transaction.

Build the pair once, at import, and execute it with a parameter dict (or a list of them, for an
executemany with ``RETURNING``): constructing a statement and computing its cache key costs more
Python time than running a small insert, and a prebuilt statement reuses both. Whether a row was
inserted is read from ``RETURNING`` (no row: it existed), never from the driver's rowcount, which
is not reliable for ``INSERT ... ON CONFLICT`` with every driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

__all__ = ["InsertOrIgnore", "insert_or_ignore"]


@dataclass(frozen=True, slots=True)
class InsertOrIgnore:
    """``INSERT ... ON CONFLICT DO NOTHING [RETURNING ...]`` for one table, for both engines.

    Example::

        _CLAIM = insert_or_ignore(t, index_elements=[t.c.api_key_id, t.c.key], returning=[t.c.id])
        row_id = (await conn.execute(_CLAIM.on(conn), params)).scalar()  # None: it existed
    """

    postgresql: Insert
    sqlite: Insert

    def on(self, conn: AsyncConnection) -> Insert:
        """The statement for ``conn``'s engine."""
        return self.for_dialect(conn.dialect.name)

    def for_dialect(self, name: str) -> Insert:
        """The statement for the dialect called ``name`` (``postgresql`` or ``sqlite``)."""
        if name == "postgresql":
            return self.postgresql
        if name == "sqlite":
            return self.sqlite
        raise ValueError(f"insert-or-ignore is written for postgresql and sqlite, not {name!r}")


def insert_or_ignore(
    table: Table,
    *,
    index_elements: Sequence[ColumnElement[Any] | str] | None = None,
    returning: Sequence[ColumnElement[Any]] = (),
) -> InsertOrIgnore:
    """Build the insert-or-ignore statements of ``table`` for both engines.

    ``index_elements`` names the unique key whose conflict is ignored (its columns, in the
    order of a unique index or constraint); ``None`` ignores a conflict on any unique key or
    the primary key. ``returning`` columns come back for an inserted row only.
    """
    pg_stmt = postgresql.insert(table).on_conflict_do_nothing(
        index_elements=list(index_elements) if index_elements is not None else None
    )
    lite_stmt = sqlite.insert(table).on_conflict_do_nothing(
        index_elements=list(index_elements) if index_elements is not None else None
    )
    if returning:
        return InsertOrIgnore(pg_stmt.returning(*returning), lite_stmt.returning(*returning))
    return InsertOrIgnore(pg_stmt, lite_stmt)
