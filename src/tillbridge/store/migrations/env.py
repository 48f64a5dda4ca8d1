"""Alembic environment: runs migrations on the connection :mod:`tillbridge.store.migrate` gives."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy.types import TypeDecorator

from tillbridge.store.schema import all_tables


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations must not import the application's type decorators (they change; migrations
    # must not): render a decorator as the plain SQL type it stores.
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable through the alembic CLI
    raise RuntimeError("use `tillbridge db upgrade`; the bare alembic CLI is not configured")

context.configure(
    connection=connection,
    target_metadata=all_tables(),
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds the table
    compare_type=True,
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
