"""What every command module shares: the consoles, the one-line error, settings, the runtime.

* :func:`fail` prints ``error: <message>`` in red on stderr and returns the :class:`typer.Exit`
  to raise; :func:`handle_errors` does that for any :class:`~tillbridge.errors.BridgeError` a
  command lets through (configuration, schema, database down: exit 1, never a traceback).
* :func:`run_async` runs a coroutine on a fresh event loop (each command is one ``asyncio.run``).
* :func:`settings` loads :class:`~tillbridge.settings.Settings` (environment and ``.env``).
* :func:`with_runtime` runs ``work(runtime)`` on a runtime built from those settings and closes
  the runtime afterwards, whatever happens.

Heavy modules (the runtime and everything it pulls in, the settings model, the HTTP server, the
simulators, the HTTP client) are imported inside the functions and commands that need them, on
purpose: ``tillbridge --help`` and a typo in a command name should answer at once, not after
importing SQLAlchemy, pydantic-settings and uvicorn. Keep that habit in every command module;
module-level imports are for typer, rich and the light pure modules.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
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
