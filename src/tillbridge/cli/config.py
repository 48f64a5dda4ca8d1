"""``tillbridge config check``: validate the merchant configuration file.

Every problem is printed with its position in the file (``path:line: where: what``) and the fix,
then a one-line summary; exit 1 if there is any. Secret references are resolved too: a secret
the bridge could not read is a problem here, before ``serve`` meets it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tillbridge.cli.common import err, fail, handle_errors, out, settings

config_app = typer.Typer(help="The merchant configuration file.", no_args_is_help=True)


@config_app.command("check")
@handle_errors
def config_check(
    path: Annotated[
        Path | None, typer.Argument(help="config file (default: TILLBRIDGE_CONFIG)")
    ] = None,
) -> None:
    """Validate the merchant configuration; print every problem with its line and the fix."""
    from tillbridge.app.registry import default_registry

    target = path or settings().config
    cfg, problems = default_registry().check_config(target)
    for problem in problems:
        err.print(problem.render(target), highlight=False, markup=False)
    if problems or cfg is None:
        raise fail(f"{len(problems)} problem(s) in {target}")
    out.print(
        f"{target}: OK ({len(cfg.stores)} stores, {len(cfg.registers)} registers, "
        f"{len(cfg.terminals)} terminals, {len(cfg.connectors)} connectors, "
        f"{len(cfg.providers)} providers, {len(cfg.erp)} ERPs, "
        f"{len(cfg.subscribers)} webhook subscribers)"
    )
