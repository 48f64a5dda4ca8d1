"""``tillbridge db upgrade|current``: the database schema (Alembic migrations)."""

from __future__ import annotations

import typer

from tillbridge.cli.common import fail, handle_errors, out, settings

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Apply pending migrations (safe to run again: does nothing when current)."""
    from tillbridge.store.migrate import upgrade

    status = upgrade(settings().database_url)
    out.print(f"database schema at {status.current} (head)")


@db_app.command("current")
@handle_errors
def db_current() -> None:
    """Show the schema revision of the database and the one this version needs."""
    from tillbridge.store.migrate import schema_status

    status = schema_status(settings().database_url)
    if status.missing_file is not None:
        out.print(f"current: none (no database file at {status.missing_file.resolve()} yet)")
    else:
        out.print(f"current: {status.current or 'none (empty database)'}")
    out.print(f"head:    {status.head}")
    if not status.up_to_date:
        raise fail("the schema is out of date: run `tillbridge db upgrade`")
