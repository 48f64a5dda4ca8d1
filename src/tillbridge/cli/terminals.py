"""``tillbridge terminals list|show|end-of-day``.

They read the same database and configuration as ``serve``; end of day is queued for the worker
that owns the terminal's link (``serve`` or ``tillbridge worker`` must be running) and the
command waits for its totals.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tillbridge.cli.common import (
    err,
    fail,
    handle_errors,
    out,
    print_json,
    print_table,
    with_runtime,
)

if TYPE_CHECKING:
    from tillbridge.app.runtime import Runtime

terminals_app = typer.Typer(help="Card terminals: status and end of day.", no_args_is_help=True)


def _yes(value: Any) -> str:
    return {True: "yes", False: "no", None: "?"}.get(value, str(value))


@terminals_app.command("list")
@handle_errors
def terminals_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every configured terminal: online, busy, last contact."""

    async def go(rt: Runtime) -> list[dict[str, Any]]:
        return list(await rt.terminals.list())

    rows = with_runtime(go)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no terminals configured (add [terminals.<id>] to the config file)", markup=False)
        return
    columns = ["id", "protocol", "link", "online", "busy", "queued", "last contact", "problem"]
    table = [
        [t["id"], t["protocol"], t["link"], _yes(t["online"]), _yes(t["busy"]),
         t["queued_payments"], t["last_contact_at"] or "never", t["problem"] or ""]
        for t in rows
    ]  # fmt: skip
    print_table(columns, table, whole=("id", "link"))


@terminals_app.command("show")
@handle_errors
def terminals_show(terminal: Annotated[str, typer.Argument(help="terminal id")]) -> None:
    """One terminal in detail, with its last end of day."""

    async def go(rt: Runtime) -> dict[str, Any]:
        return dict(await rt.terminals.status(terminal))

    t = with_runtime(go)
    eod = t.pop("last_end_of_day")
    caps = t.pop("capabilities")
    for key, value in t.items():
        out.print(f"{key:>20}: {value if value is not None else '-'}", highlight=False)
    out.print(f"{'capabilities':>20}: {', '.join(k for k, v in caps.items() if v) or '-'}")
    if eod is not None:
        out.print(
            f"{'last end of day':>20}: {eod['id']} {eod['state']} total {eod['total']} "
            f"{eod['currency']} ({eod['count']} payments) at {eod['finished_at']}"
        )


@terminals_app.command("end-of-day")
@handle_errors
def terminals_end_of_day(
    terminal: Annotated[str, typer.Argument(help="terminal id")],
    wait: Annotated[bool, typer.Option(help="wait for the totals")] = True,
    timeout: Annotated[float, typer.Option(min=1, help="seconds to wait")] = 300.0,
) -> None:
    """Close the terminal's day; the totals are stored for reconciliation."""

    async def go(rt: Runtime) -> dict[str, Any]:
        eod: dict[str, Any] = await rt.terminals.request_settlement(terminal, actor="cli")
        err.print(f"end of day {eod['id']} queued for terminal {terminal}")
        if not wait:
            return eod
        deadline = time.monotonic() + timeout
        while eod["state"] in ("pending", "running") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # polling the database for the worker's result
            eod = await rt.terminals.settlement(terminal, eod["id"])
        return eod

    eod = with_runtime(go)
    if eod["state"] == "pending" and wait:
        raise fail(
            f"no worker ran end of day {eod['id']} within {timeout:g} s: is `tillbridge serve` "
            "or `tillbridge worker` running? It stays queued."
        )
    out.print(f"end of day {eod['id']}: {eod['state']}", highlight=False)
    if eod["total"] is not None:
        out.print(
            f"  total {eod['total']} {eod['currency']} (minor units), {eod['count']} payments"
        )
    for s in eod["schemes"]:
        out.print(f"  {s['scheme']}: {s['count']} payments, {s['total']}")
    if eod["detail"]:
        out.print(f"  {eod['detail']}", highlight=False)
    if eod["state"] not in ("succeeded", "pending"):
        raise typer.Exit(1)
