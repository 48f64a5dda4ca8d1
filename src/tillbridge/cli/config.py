"""``tillbridge config check``: validate the settings and the merchant configuration file.

Every problem is printed with its position in the file (``path:line: where: what``) and the fix,
then a one-line summary; exit 1 if there is any. The environment settings (``TILLBRIDGE_*``) are
checked first, each bad one named with its value. Secret references are resolved too: a secret
the bridge could not read is a problem here, before ``serve`` meets it (where it stops only the
part that needs it). ``--no-secrets`` checks the structure alone, for a file written on one
machine and deployed on another (the example config, a file in version control).

Without ``TILLBRIDGE_CONFIG`` and without ``./tillbridge.toml`` there is nothing to check: the
bridge runs on the built-in sandbox, which is said and is not an error. A file named on the
command line or in ``TILLBRIDGE_CONFIG`` must exist.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tillbridge.cli.common import err, fail, handle_errors, out
from tillbridge.errors import ConfigError

config_app = typer.Typer(help="The merchant configuration file.", no_args_is_help=True)


@config_app.command("check")
@handle_errors
def config_check(
    path: Annotated[
        Path | None, typer.Argument(help="config file (default: TILLBRIDGE_CONFIG)")
    ] = None,
    no_secrets: Annotated[
        bool,
        typer.Option(
            "--no-secrets",
            help="check the structure only; do not read the secrets (env variables, files)",
        ),
    ] = False,
) -> None:
    """Validate the settings and the merchant configuration; print every problem and its fix."""
    from tillbridge.app.registry import default_registry
    from tillbridge.settings import DEFAULT_CONFIG_PATH, load_settings

    count = 0
    named = path
    try:
        settings = load_settings()
        named = named or settings.config
    except ConfigError as exc:
        for line in exc.details.get("problems", [exc.message]):
            err.print(f"environment: {line}", highlight=False, markup=False)
            count += 1
        named = named or Path(os.environ.get("TILLBRIDGE_CONFIG") or DEFAULT_CONFIG_PATH)
    target = named
    if not target.exists() and path is None and target == DEFAULT_CONFIG_PATH:
        if count:
            raise fail(f"{count} problem(s) in the environment")
        out.print(
            f"{target} not found: the bridge runs with the built-in sandbox connector 'fake' "
            "only (copy tillbridge.example.toml to start a configuration)",
            highlight=False,
            soft_wrap=True,
        )
        return
    cfg, problems = default_registry().check_config(target, secrets=not no_secrets)
    for problem in problems:
        err.print(problem.render(target), highlight=False, markup=False)
    count += len(problems)
    if count or cfg is None:
        raise fail(f"{count} problem(s) in {target}" if problems else f"{count} problem(s)")
    checked = "structure only, secrets not read" if no_secrets else "secrets readable"
    out.print(
        f"{target}: OK ({len(cfg.stores)} stores, {len(cfg.registers)} registers, "
        f"{len(cfg.terminals)} terminals, {len(cfg.connectors)} connectors, "
        f"{len(cfg.providers)} providers, {len(cfg.erp)} ERPs, "
        f"{len(cfg.subscribers)} webhook subscribers; {checked})",
        highlight=False,
        soft_wrap=True,
    )
