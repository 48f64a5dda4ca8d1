"""The ``tillbridge`` command line: serve, worker, db, apikey, config, jobs, payments, demo.

Every command builds its settings with :func:`~tillbridge.settings.load_settings` (environment and
``.env``) and reports failures as one clear line on stderr with a non-zero exit code, never a
traceback, for the errors a user can fix (configuration, schema, database down).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from tillbridge.cli.jobs import jobs_app
from tillbridge.cli.simulate import simulate_app
from tillbridge.cli.terminals import terminals_app
from tillbridge.cli.webhooks import webhooks_app
from tillbridge.errors import BridgeError
from tillbridge.settings import Settings, load_settings

app = typer.Typer(
    name="tillbridge",
    help="Self-hosted payment bridge between sales systems, card terminals and payment providers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for the HTTP API.", no_args_is_help=True)
config_app = typer.Typer(help="The merchant configuration file.", no_args_is_help=True)
payments_app = typer.Typer(help="Operator actions on payments.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(apikey_app, name="apikey")
app.add_typer(config_app, name="config")
app.add_typer(jobs_app, name="jobs")
app.add_typer(payments_app, name="payments")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(simulate_app, name="simulate")
app.add_typer(terminals_app, name="terminals")

err = Console(stderr=True)
out = Console()
T = TypeVar("T")


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn the bridge's own errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except BridgeError as exc:
            raise fail(exc.message) from None

    return wrapper


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings() -> Settings:
    return load_settings()


# db ----------------------------------------------------------------------------------------------


@db_app.command("upgrade")
@handle_errors
def db_upgrade() -> None:
    """Apply pending migrations (safe to run again: does nothing when current)."""
    from tillbridge.store.migrate import upgrade

    s = settings()
    status = upgrade(s.database_url)
    out.print(f"database schema at {status.current} (head)")


@db_app.command("current")
@handle_errors
def db_current() -> None:
    """Show the schema revision of the database and the one this version needs."""
    from tillbridge.store.migrate import schema_status

    status = schema_status(settings().database_url)
    out.print(f"current: {status.current or 'none (empty database)'}")
    out.print(f"head:    {status.head}")
    if not status.up_to_date:
        raise fail("the schema is out of date: run `tillbridge db upgrade`")


# config ------------------------------------------------------------------------------------------


@config_app.command("check")
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


# apikey ------------------------------------------------------------------------------------------


@apikey_app.command("create")
@handle_errors
def apikey_create(
    name: Annotated[str, typer.Option(help="who uses the key, e.g. 'odoo-pos'")],
    scope: Annotated[
        list[str], typer.Option(help="payments:read, payments:write or admin (repeatable)")
    ],
) -> None:
    """Create an API key. The key is printed once, alone on the last line of stdout."""
    from tillbridge.services import apikeys

    async def go() -> str:
        rt = _runtime()
        try:
            async with rt.db.write() as conn:
                _record, plaintext = await apikeys.create_key(conn, name, scope)
            return plaintext
        finally:
            await rt.close()

    plaintext = run_async(go())
    err.print(f"created API key '{name}' with scopes {', '.join(scope)}; it is shown only once:")
    print(plaintext)


@apikey_app.command("list")
@handle_errors
def apikey_list() -> None:
    """List API keys (never their secrets)."""
    from rich.table import Table

    from tillbridge.services import apikeys

    async def go() -> list[Any]:
        rt = _runtime()
        try:
            async with rt.db.read() as conn:
                return list(await apikeys.list_keys(conn))
        finally:
            await rt.close()

    table = Table("id", "name", "prefix", "scopes", "created", "revoked")
    for k in run_async(go()):
        table.add_row(
            k.id, k.name, k.prefix, " ".join(k.scopes), str(k.created_at), str(k.revoked_at or "")
        )
    out.print(table)


@apikey_app.command("revoke")
@handle_errors
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="id or prefix of the key")]) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    from tillbridge.services import apikeys

    async def go() -> None:
        rt = _runtime()
        try:
            async with rt.db.write() as conn:
                await apikeys.revoke(conn, key_id)
        finally:
            await rt.close()

    run_async(go())
    out.print(f"revoked {key_id}")


# payments ----------------------------------------------------------------------------------------


@payments_app.command("resolve")
@handle_errors
def payments_resolve(
    payment_id: str,
    as_: Annotated[str, typer.Option("--as", help="succeeded or failed")],
    reason: Annotated[str, typer.Option(help="why; goes to the audit log")],
    operator: Annotated[str, typer.Option(help="who decides")] = "cli",
) -> None:
    """Settle a payment stuck in `unknown` after checking the terminal or provider yourself."""

    async def go() -> str:
        rt = _runtime()
        try:
            p = await rt.payments.resolve(
                payment_id, outcome=as_, reason=reason, actor=f"operator:{operator}"
            )
            return str(p.state)
        finally:
            await rt.close()

    out.print(f"{payment_id} is now {run_async(go())}")


# serve / worker ----------------------------------------------------------------------------------


def _runtime() -> Any:
    from tillbridge.app.runtime import build_runtime

    return build_runtime(settings())


@app.command()
@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
    no_worker: Annotated[
        bool, typer.Option(help="API only; run `tillbridge worker` apart")
    ] = False,
) -> None:
    """Run the API, with the job worker and scheduler in the same process (embedded default)."""
    from tillbridge.cli.serve import run_server

    s = settings()
    run_async(run_server(s, host=host or s.host, port=port or s.port, worker=not no_worker))


@app.command()
@handle_errors
def worker(
    concurrency: Annotated[int | None, typer.Option(help="jobs run at once")] = None,
) -> None:
    """Run a job worker (and the periodic scheduler) without the API."""
    from tillbridge.cli.serve import run_worker_only

    s = settings()
    if concurrency is not None:
        s = s.model_copy(update={"worker_concurrency": concurrency})
    run_async(run_worker_only(s))


@app.command()
@handle_errors
def demo(
    keep: Annotated[bool, typer.Option(help="keep the demo database under ./var/")] = False,
) -> None:
    """A scripted end-to-end run against the built-in fake connector, with a summary."""
    from tillbridge.cli.demo import run_demo

    code = run_async(run_demo(out, keep=keep))
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
