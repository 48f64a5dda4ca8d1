"""``tillbridge simulate ...``: drive a running bridge as Xentral would, or stand in for Xentral.

``simulate xentral`` sends signed ``pos.cardPaymentCaptured`` events to
``<url>/webhooks/xentral/<account>`` at a given rate, with fault knobs (duplicates, a wrong key,
stale timestamps), and prints what the bridge answered. Each event gets its own document number,
so events are distinct; ``--duplicate`` re-sends each one (same bytes, new timestamp), which the
bridge must answer the same way without a second payment.

``simulate xentral-api`` serves the Xentral v3 write-back endpoints (invoices, sales orders) so
the bridge's write-back can be watched end to end; point an ``erp`` entry's ``url`` at it.

The signature key is read from ``--secret`` or ``TILLBRIDGE_SIM_XENTRAL_SECRET`` (prefer the
variable: command lines end up in shell history and process lists).

``simulate zvt`` plays a ZVT payment terminal over TCP or on a serial device, with fault knobs,
so the bridge can be tried without hardware. Amount rules (last two digits of the amount in
cents): ``..51`` host decline, ``..52`` customer cancel (6C), ``..97`` link cut before the
result, ``..98`` cut after the bridge acknowledged it, ``..99`` cut right after the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tillbridge.cli.common import out, run_async
from tillbridge.errors import MoneyError
from tillbridge.money import Money

if TYPE_CHECKING:
    import httpx2

# The HTTP client, the simulators and rich's progress bar are imported inside the commands (see
# tillbridge.cli.common on why).

simulate_app = typer.Typer(
    name="simulate", help="Simulate counterparts against a running bridge.", no_args_is_help=True
)

_MEANING = {
    200: "accepted (stored)",
    400: "bad body",
    401: "signature rejected",
    404: "unknown source or account",
    413: "body too large",
    415: "not JSON",
    429: "throttled (too many failures)",
    503: "bridge database unavailable",
}


def parse_rate(text: str) -> float:
    """``"50/s"``, ``"50"`` or ``"0.5/s"``: events per second (> 0)."""
    value = text.strip().lower().removesuffix("/s").strip()
    try:
        rate = float(value)
    except ValueError:
        raise typer.BadParameter("use a number of events per second, e.g. 50/s") from None
    if not rate > 0:
        raise typer.BadParameter("the rate must be positive")
    return rate


@dataclass
class Tally:
    codes: Counter[int | str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def _send(
    client: httpx2.AsyncClient, url: str, payload: dict[str, Any], opts: dict[str, Any]
) -> list[tuple[int | str, float]]:
    import httpx2

    from tillbridge.simulators.xentral import deliveries

    results: list[tuple[int | str, float]] = []
    batch = deliveries(payload, now=int(time.time()), key=opts["secret"], **opts["knobs"])
    for d in batch:
        started = time.perf_counter()
        try:
            r = await client.post(url, content=d.body, headers=d.headers)
            code: int | str = r.status_code
        except httpx2.HTTPError as exc:
            code = type(exc).__name__
        results.append((code, time.perf_counter() - started))
    return results


async def run_xentral(
    *,
    url: str,
    account: str,
    secret: str,
    count: int,
    rate: float,
    amount: Money,
    project: str,
    knobs: dict[str, bool],
    concurrency: int,
    console: Console,
) -> Tally:
    """Send ``count`` events at ``rate`` per second; return what came back."""
    import httpx2
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from tillbridge.simulators.xentral import card_payment_body, envelope

    target = f"{url.rstrip('/')}/webhooks/xentral/{account}"
    base = random.randint(10**7, 9 * 10**7)  # noqa: S311 - document numbers, not secrets
    run = secrets.token_hex(3)
    tally = Tally()
    gate = asyncio.Semaphore(concurrency)
    opts = {"secret": secret, "knobs": knobs}
    project_id: int | str = int(project) if project.isdigit() else project

    async with httpx2.AsyncClient(timeout=30.0) as client:
        with Progress(
            TextColumn("[bold]sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("events", total=count)

            async def one(i: int) -> None:
                body = card_payment_body(
                    amount,
                    project_id=project_id,
                    document_number=str(base + i),
                    guid=f"sim-{run}-{i}",
                )
                async with gate:
                    for code, seconds in await _send(client, target, envelope(body), opts):
                        tally.codes[code] += 1
                        tally.latencies.append(seconds)
                progress.advance(task)

            started = time.perf_counter()
            tasks = []
            for i in range(count):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
    return tally


@simulate_app.command("xentral")
def xentral_cmd(
    account: Annotated[str, typer.Option(help="the bridge's erp entry name for this Xentral")],
    secret: Annotated[
        str,
        typer.Option(envvar="TILLBRIDGE_SIM_XENTRAL_SECRET", help="webhook signature key"),
    ],
    url: Annotated[str, typer.Option(help="the bridge")] = "http://127.0.0.1:8000",
    count: Annotated[int, typer.Option(min=1, max=1_000_000, help="events to send")] = 1,
    rate: Annotated[str, typer.Option(help="events per second, e.g. 20/s")] = "10/s",
    amount: Annotated[str, typer.Option(help="amount per event, e.g. 12.34")] = "12.34",
    currency: Annotated[str, typer.Option(help="ISO 4217 code")] = "EUR",
    project: Annotated[str, typer.Option(help="Xentral project id or number")] = "1",
    duplicate: Annotated[bool, typer.Option("--duplicate", help="send each event twice")] = False,
    bad_signature: Annotated[
        bool, typer.Option("--bad-signature", help="sign with a wrong key")
    ] = False,
    stale: Annotated[bool, typer.Option("--stale", help="timestamps an hour old")] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=1000, help="requests in flight")] = 32,
) -> None:
    """Send signed Xentral POS card-payment events to a running bridge; summarise the answers."""
    try:
        money = Money.of(Decimal(amount), currency)
    except (MoneyError, ArithmeticError) as exc:
        raise typer.BadParameter(f"--amount: {exc}") from None
    knobs = {"duplicate": duplicate, "bad_signature": bad_signature, "stale": stale}
    started = time.perf_counter()
    tally = run_async(
        run_xentral(
            url=url,
            account=account,
            secret=secret,
            count=count,
            rate=parse_rate(rate),
            amount=money,
            project=project,
            knobs=knobs,
            concurrency=concurrency,
            console=out,
        )
    )
    elapsed = time.perf_counter() - started
    table = Table("answer", "count", "meaning")
    for code, n in sorted(tally.codes.items(), key=lambda kv: str(kv[0])):
        meaning = _MEANING.get(code, "") if isinstance(code, int) else "no answer"
        table.add_row(str(code), str(n), meaning)
    out.print(table)
    sent = sum(tally.codes.values())
    out.print(
        f"{sent} requests in {elapsed:.1f} s ({sent / elapsed:.0f}/s); latency "
        f"p50 {tally.percentile(0.5) * 1000:.1f} ms, p99 {tally.percentile(0.99) * 1000:.1f} ms"
    )
    if any(not isinstance(c, int) for c in tally.codes):
        raise typer.Exit(1)


class _AutoDocs(dict[str, dict[str, Any]]):
    """Documents that exist as soon as they are asked for (any invoice id is writable)."""

    def __init__(self, make: Any) -> None:
        super().__init__()
        self._make = make

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self._make(key)
        return super().get(key, default)


@simulate_app.command("xentral-api")
def xentral_api_cmd(
    port: Annotated[int, typer.Option(min=0, max=65535, help="listen port (0: any free)")] = 8081,
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    token: Annotated[
        str, typer.Option(envvar="TILLBRIDGE_SIM_XENTRAL_TOKEN", help="bearer token to accept")
    ] = "sim-token",  # noqa: S107 - the simulator's own default, not a real credential
    auto_create: Annotated[
        bool, typer.Option(help="any invoice or sales order id exists on first use")
    ] = True,
) -> None:
    """Serve the Xentral v3 write-back endpoints (invoices, sales orders) for local testing."""
    import uvicorn

    from tillbridge.simulators.xentral import XentralSimState, create_app

    state = XentralSimState(token=token)
    if auto_create:
        state.invoices = _AutoDocs(state.add_invoice)
        state.sales_orders = _AutoDocs(state.add_sales_order)
    out.print(f"xentral write-back simulator on http://{host}:{port} (token from --token)")
    uvicorn.run(create_app(state), host=host, port=port, log_level="info")


# zvt ---------------------------------------------------------------------------------------------


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise typer.BadParameter("use HOST:PORT, e.g. 127.0.0.1:20007 (port 0: any free port)")
    return host or "127.0.0.1", int(port)


@simulate_app.command("zvt")
def simulate_zvt(
    tcp: Annotated[str | None, typer.Option(help="listen on HOST:PORT (ZVT over TCP)")] = None,
    serial: Annotated[str | None, typer.Option(help="serve on this serial device / PTY")] = None,
    hold_card: Annotated[
        bool, typer.Option("--hold-card", help="wait at 'insert card' until Enter is pressed")
    ] = False,
    busy: Annotated[
        bool, typer.Option("--busy", help="answer every command 'busy' (84 A0)")
    ] = False,
    cut_after_status: Annotated[
        bool, typer.Option("--cut-after-status", help="drop the link after each result")
    ] = False,
    no_completion: Annotated[
        bool, typer.Option("--no-completion", help="never send Completion (06 0F)")
    ] = False,
    response_delay: Annotated[float, typer.Option(min=0, help="seconds before each message")] = 0.0,
    garbage: Annotated[
        str | None, typer.Option(help="hex bytes sent instead of the first answer, e.g. 150369")
    ] = None,
    unacked: Annotated[
        str, typer.Option(help="keep or reverse a result the bridge never acknowledged")
    ] = "keep",
    corrupt_crc_once: Annotated[
        bool, typer.Option("--corrupt-crc-once", help="serial: first frame bad CRC")
    ] = False,
    nak_once: Annotated[
        bool, typer.Option("--nak-once", help="serial: NAK the first frame")
    ] = False,
    charset: Annotated[str, typer.Option(help="cp437 or latin-1")] = "cp437",
) -> None:
    """Play a ZVT payment terminal over TCP or a serial line, with fault switches.

    The amount's last two digits (in cents) pick what happens: 51 the card issuer declines,
    52 the customer presses cancel, 97 the link drops before the result, 98 it drops after the
    bridge acknowledged the result, 99 it drops right after the result; anything else is
    approved. Receipts and display texts go to the bridge (the payment's events and
    GET /v1/payments/{id}/terminal show them); this console shows where it listens and, on
    Ctrl-C, what it booked.
    """
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
    run_async(_run_simulator(tcp, serial, knobs))


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
