"""``tillbridge terminals list|show|end-of-day``.

They read the same database and configuration as ``serve``; end of day is queued for the worker
that owns the terminal's link (``serve`` or ``tillbridge worker`` must be running) and the
command waits for its totals.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tillbridge.errors import BridgeError

terminals_app = typer.Typer(help="Card terminals: status and end of day.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    _err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


def _with_runtime(fn: Any) -> Any:
    """Run ``fn(runtime)`` in a fresh runtime; bridge errors become one line on stderr."""
    from tillbridge.app.runtime import build_runtime
    from tillbridge.settings import load_settings

    async def go() -> Any:
        rt = build_runtime(load_settings())
        try:
            return await fn(rt)
        finally:
            await rt.close()

    try:
        return asyncio.run(go())
    except BridgeError as exc:
        raise _fail(exc.message) from None


def _yes(value: Any) -> str:
    return {True: "yes", False: "no", None: "?"}.get(value, str(value))


@terminals_app.command("list")
def terminals_list() -> None:
    """Every configured terminal: online, busy, last contact."""

    async def go(rt: Any) -> list[dict[str, Any]]:
        return list(await rt.terminals.list())

    rows = _with_runtime(go)
    if not rows:
        _out.print("no terminals configured (add [terminals.<id>] to the config file)")
        return
    table = Table("id", "protocol", "link", "online", "busy", "queued", "last contact", "problem")
    for t in rows:
        table.add_row(
            t["id"], t["protocol"], t["link"], _yes(t["online"]), _yes(t["busy"]),
            str(t["queued_payments"]), t["last_contact_at"] or "never", t["problem"] or "",
        )  # fmt: skip
    _out.print(table)


@terminals_app.command("show")
def terminals_show(terminal: Annotated[str, typer.Argument(help="terminal id")]) -> None:
    """One terminal in detail, with its last end of day."""

    async def go(rt: Any) -> dict[str, Any]:
        return dict(await rt.terminals.status(terminal))

    t = _with_runtime(go)
    eod = t.pop("last_end_of_day")
    caps = t.pop("capabilities")
    for key, value in t.items():
        _out.print(f"{key:>20}: {value if value is not None else '-'}", highlight=False)
    _out.print(f"{'capabilities':>20}: {', '.join(k for k, v in caps.items() if v) or '-'}")
    if eod is not None:
        _out.print(
            f"{'last end of day':>20}: {eod['id']} {eod['state']} total {eod['total']} "
            f"{eod['currency']} ({eod['count']} payments) at {eod['finished_at']}"
        )


@terminals_app.command("end-of-day")
def terminals_end_of_day(
    terminal: Annotated[str, typer.Argument(help="terminal id")],
    wait: Annotated[bool, typer.Option(help="wait for the totals")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to wait")] = 300.0,
) -> None:
    """Close the terminal's day; the totals are stored for reconciliation."""

    async def go(rt: Any) -> dict[str, Any]:
        eod: dict[str, Any] = await rt.terminals.request_settlement(terminal, actor="cli")
        _err.print(f"end of day {eod['id']} queued for terminal {terminal}")
        if not wait:
            return eod
        deadline = time.monotonic() + timeout
        while eod["state"] in ("pending", "running") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # polling the database for the worker's result
            eod = await rt.terminals.settlement(terminal, eod["id"])
        return eod

    eod = _with_runtime(go)
    if eod["state"] == "pending" and wait:
        raise _fail(
            f"no worker ran end of day {eod['id']} within {timeout:g} s: is `tillbridge serve` "
            "or `tillbridge worker` running? It stays queued."
        )
    _out.print(f"end of day {eod['id']}: {eod['state']}", highlight=False)
    if eod["total"] is not None:
        _out.print(
            f"  total {eod['total']} {eod['currency']} (minor units), {eod['count']} payments"
        )
    for s in eod["schemes"]:
        _out.print(f"  {s['scheme']}: {s['count']} payments, {s['total']}")
    if eod["detail"]:
        _out.print(f"  {eod['detail']}", highlight=False)
    if eod["state"] not in ("succeeded", "pending"):
        raise typer.Exit(1)


# simulate zvt ------------------------------------------------------------------------------------
