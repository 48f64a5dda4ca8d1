"""The one :class:`~sqlalchemy.MetaData` every table of the bridge is declared on.

Table modules (``store/tables.py``, ``queue/tables.py``, ...) import :data:`metadata` from here;
:mod:`tillbridge.store.schema` imports all of them so Alembic and the tests see the whole schema.
"""

from __future__ import annotations

from sqlalchemy import MetaData

# Deterministic constraint names, so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)
