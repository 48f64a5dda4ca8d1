"""The ``tillbridge`` command line: serve, worker, demo, db, apikey, config, jobs, payments,
webhooks, simulate, terminals, connectors.

Every command builds its settings with :func:`~tillbridge.settings.load_settings` (environment and
``.env``) and reports failures as one clear line on stderr with a non-zero exit code, never a
traceback, for the errors a user can fix (configuration, schema, database down).

This module is only the root app: it wires one module per sub-app (:mod:`.db`, :mod:`.apikey`,
:mod:`.config`, :mod:`.jobs`, :mod:`.payments`, :mod:`.webhooks`, :mod:`.simulate`,
:mod:`.terminals`, :mod:`.connectors`) and the top-level commands (``serve`` and ``worker`` from
:mod:`.serve`, ``demo`` from :mod:`.demo`). What they share (the error line, settings, a
runtime for one command) is in :mod:`.common`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tillbridge.cli.apikey import apikey_app
from tillbridge.cli.config import config_app
from tillbridge.cli.connectors import connectors_app
from tillbridge.cli.db import db_app
from tillbridge.cli.demo import demo
from tillbridge.cli.jobs import jobs_app
from tillbridge.cli.payments import payments_app
from tillbridge.cli.serve import serve, worker
from tillbridge.cli.simulate import simulate_app
from tillbridge.cli.terminals import terminals_app
from tillbridge.cli.webhooks import webhooks_app

app = typer.Typer(
    name="tillbridge",
    help="Self-hosted payment bridge between sales systems, card terminals and payment providers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        import importlib.metadata

        try:
            version = importlib.metadata.version("tillbridge")
        except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
            version = "0+unknown"
        print(f"tillbridge {version}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Self-hosted payment bridge between sales systems, card terminals and payment providers."""


# The order here is the order of `tillbridge --help`.
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
app.add_typer(config_app, name="config")
app.add_typer(jobs_app, name="jobs")
app.add_typer(payments_app, name="payments")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(simulate_app, name="simulate")
app.add_typer(terminals_app, name="terminals")
app.add_typer(connectors_app, name="connectors")
app.command()(serve)
app.command()(worker)
app.command()(demo)


def main() -> None:
    """The console script (``tillbridge``) and ``python -m tillbridge.cli``."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
