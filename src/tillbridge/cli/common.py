"""What every command module shares: the consoles, the one-line error, settings, the runtime.

* :func:`fail` prints ``error: <message>`` in red on stderr and returns the :class:`typer.Exit`
  to raise; :func:`handle_errors` does that for any :class:`~tillbridge.errors.BridgeError` a
  command lets through (configuration, schema, database down: exit 1, never a traceback).
* :func:`run_async` runs a coroutine on a fresh event loop (each command is one ``asyncio.run``).
* :func:`settings` loads :class:`~tillbridge.settings.Settings` (environment and ``.env``).
* :func:`with_runtime` runs ``work(runtime)`` on a runtime built from those settings and closes
  the runtime afterwards, whatever happens.
* :func:`print_table` and :func:`print_json` are how every listing prints: a table, whole cells
  whatever the width (on a terminal long cells fold, piped nothing is cut), or with ``--json``
  the rows as a JSON array on stdout; :func:`print_more` the next page's cursor.

Heavy modules (the runtime and everything it pulls in, the settings model, the HTTP server, the
simulators, the HTTP client) are imported inside the functions and commands that need them, on
purpose: ``tillbridge --help`` and a typo in a command name should answer at once, not after
importing SQLAlchemy, pydantic-settings and uvicorn. Keep that habit in every command module;
module-level imports are for typer, rich and the light pure modules.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tillbridge.errors import BridgeError

if TYPE_CHECKING:
    from tillbridge.app.runtime import Runtime
    from tillbridge.config import MerchantConfig
    from tillbridge.settings import Settings

T = TypeVar("T")

#: Results for people and for pipes (``apikey create`` prints the key alone on stdout).
out = Console()
#: Errors and progress notes. ``soft_wrap``: a long message (a path with its line number) stays
#: on one line instead of being folded at 80 columns when stderr is not a terminal.
err = Console(stderr=True, soft_wrap=True)


#: Width of a table that is piped: wide enough that no cell is ever cut for a narrow default.
_PIPED_WIDTH = 10_000


def table_console() -> Console:
    """The console a table is printed on: :data:`out` on a terminal; piped, one without a
    width limit, so ids and other values reach a script or a file whole."""
    if out.is_terminal:
        return out
    return Console(width=_PIPED_WIDTH, no_color=True, highlight=False)


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    whole: Sequence[str] = ("id",),
) -> None:
    """Print ``rows`` as a table. Cells are text, never markup; columns named in ``whole``
    (ids by default) are never wrapped, the others fold on a narrow terminal."""
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns)
    for col in table.columns:
        col.no_wrap = str(col.header) in whole
        col.overflow = "fold"
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row))
    table_console().print(table)


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (datetimes and other values as text)."""
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def print_more(next_cursor: str | None, *, as_json: bool) -> None:
    """The next page's cursor, when there is one: after a table, or on stderr with ``--json``
    (stdout stays one JSON document)."""
    if next_cursor is not None:
        console = err if as_json else table_console()
        console.print(f"more: --cursor {next_cursor}", highlight=False, markup=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; return the exit to raise (``raise fail(...)``)."""
    # The message is text, not markup: a "[terminals.lane1]" in it must be printed as is.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn the bridge's own errors into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except BridgeError as exc:
            detail = exc.details.get("detail")  # the driver's own words: "connection refused"
            raise fail(f"{exc.message} ({detail})" if detail else exc.message) from None

    return wrapper


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a new event loop."""
    return asyncio.run(coro)


def settings() -> Settings:
    """The settings of this process (environment and ``.env``)."""
    from tillbridge.settings import load_settings

    return load_settings()


def with_runtime(
    work: Callable[[Runtime], Awaitable[T]], *, config: MerchantConfig | None = None
) -> T:
    """Build a runtime from :func:`settings` (and ``config``, default: the configured file),
    run ``work`` on it and close it, on one event loop. Errors propagate: decorate the command
    with :func:`handle_errors`."""
    from tillbridge.app.runtime import build_runtime

    async def go() -> T:
        # Built inside the loop: the database engine and the connectors belong to it.
        rt = build_runtime(settings(), config)
        try:
            return await work(rt)
        finally:
            await rt.close()

    return run_async(go())
