"""``tillbridge terminals list|show|end-of-day`` and the ``simulate zvt`` command function.

``terminals`` reads the same database and configuration as ``serve``; end of day is queued for
the worker that owns the terminal's link (``serve`` or ``tillbridge worker`` must be running)
and the command waits for its totals.

``simulate zvt`` (:func:`simulate_zvt`) plays a ZVT payment terminal over TCP or on a serial
device, with fault knobs, so the bridge can be tried without hardware. Amount rules (last two
digits of the amount in cents): ``..51`` host decline, ``..52`` customer cancel (6C), ``..97``
link cut before the result, ``..98`` cut after the bridge acknowledged it, ``..99`` cut right
after the result. Until it is wired as ``tillbridge simulate zvt`` it also runs as
``python -m tillbridge.cli_terminals --tcp 127.0.0.1:20007``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
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
    from tillbridge.runtime import build_runtime
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
        return list(await rt.terminals.admin.list())

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
        return dict(await rt.terminals.admin.status(terminal))

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
        eod: dict[str, Any] = await rt.terminals.admin.request_settlement(terminal, actor="cli")
        _err.print(f"end of day {eod['id']} queued for terminal {terminal}")
        if not wait:
            return eod
        deadline = time.monotonic() + timeout
        while eod["state"] in ("pending", "running") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # polling the database for the worker's result
            eod = await rt.terminals.admin.settlement(terminal, eod["id"])
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


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise typer.BadParameter("use HOST:PORT, e.g. 127.0.0.1:20007 (port 0: any free port)")
    return host or "127.0.0.1", int(port)


def simulate_zvt(
    tcp: Annotated[str | None, typer.Option(help="listen on HOST:PORT (ZVT over TCP)")] = None,
    serial: Annotated[str | None, typer.Option(help="serve on this serial device / PTY")] = None,
    hold_card: Annotated[
        bool, typer.Option(help="wait at 'insert card' until Enter is pressed")
    ] = False,
    busy: Annotated[bool, typer.Option(help="answer every command 'busy' (84 A0)")] = False,
    cut_after_status: Annotated[bool, typer.Option(help="drop the link after each result")] = False,
    no_completion: Annotated[bool, typer.Option(help="never send Completion (06 0F)")] = False,
    response_delay: Annotated[float, typer.Option(min=0, help="seconds before each message")] = 0.0,
    garbage: Annotated[
        str | None, typer.Option(help="hex bytes sent instead of the first answer, e.g. 150369")
    ] = None,
    unacked: Annotated[
        str, typer.Option(help="keep or reverse a result the bridge never acknowledged")
    ] = "keep",
    corrupt_crc_once: Annotated[bool, typer.Option(help="serial: first frame bad CRC")] = False,
    nak_once: Annotated[bool, typer.Option(help="serial: NAK the first frame")] = False,
    charset: Annotated[str, typer.Option(help="cp437 or latin-1")] = "cp437",
) -> None:
    """Play a ZVT payment terminal (see the module docstring for the amount rules)."""
    if (tcp is None) == (serial is None):
        raise typer.BadParameter("give exactly one of --tcp HOST:PORT or --serial DEVICE")
    if unacked not in ("keep", "reverse") or charset not in ("cp437", "latin-1"):
        raise typer.BadParameter("--unacked is keep|reverse, --charset is cp437|latin-1")
    try:
        raw = bytes.fromhex(garbage) if garbage else None
    except ValueError:
        raise typer.BadParameter("--garbage takes hex digits, e.g. 150369") from None
    knobs: dict[str, Any] = {
        "hold_card": hold_card, "busy": busy, "cut_after_status": cut_after_status,
        "send_completion": not no_completion, "response_delay": response_delay,
        "garbage": raw, "unacked_policy": unacked, "charset": charset,
        "corrupt_crc_once": corrupt_crc_once, "nak_once": nak_once,
    }  # fmt: skip
    asyncio.run(_run_simulator(tcp, serial, knobs))


async def _run_simulator(tcp: str | None, serial: str | None, knobs: dict[str, Any]) -> None:
    from tillbridge.simulators.zvt import serve_serial, serve_tcp

    if tcp is not None:
        host, port = _host_port(tcp)
        handle = await serve_tcp(host, port, **knobs)
        where = f"tcp://{host}:{handle.port}"
    else:
        assert serial is not None
        handle = await serve_serial(serial, **knobs)
        where = f"serial:{serial}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"ZVT terminal simulator listening on {where}", flush=True)
    print(
        "amounts ending in 51 decline, 52 customer cancel, 97/98/99 cut the link "
        "(before the result / after it was acknowledged / right after it); Ctrl-C stops",
        flush=True,
    )
    card = None
    if knobs["hold_card"]:
        card = asyncio.create_task(_insert_cards(handle.terminal))
    try:
        await stop.wait()
    finally:
        if card is not None:
            card.cancel()
        await handle.close()
    t = handle.terminal
    print(
        f"stopped: {len(t.journal)} transactions, {t.charges} card charges, "
        f"{len(t.booked_purchases)} booked purchases, {t.busy_rejections} busy answers",
        flush=True,
    )


async def _insert_cards(terminal: Any) -> None:
    """Each line on stdin inserts the card the terminal is waiting for."""
    print("hold-card: press Enter to insert the card when the terminal asks", flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        terminal.release_card()


#: Stand-alone entry point until the lead wires ``tillbridge simulate zvt``.
zvt_simulate_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
zvt_simulate_app.command()(simulate_zvt)

if __name__ == "__main__":
    zvt_simulate_app()
