"""``tillbridge demo``: a scripted end-to-end run that shows what the bridge does, with a summary.

It starts its own bridge in-process (not the one ``make run`` or ``tillbridge serve`` runs,
which it never touches) on a throwaway SQLite database, removed at the end unless ``--keep``
keeps it as ``./var/demo.db``, with the built-in sandbox
connector and a simulated ZVT card terminal (``lane1``, the simulator listening on a local TCP
port), creates an API key, sends payments through the real HTTP API (one succeeds, one is
declined, one times out after sending and is recovered by a status query), replays a request with
the same Idempotency-Key, runs three payments on the terminal (an ordinary one whose events are
streamed, one whose link is cut after the terminal approved it and that recovery settles, one
the card issuer declines), and waits, with progress, until the worker has settled everything.

This module holds the command and :func:`run_demo`, the coroutine it runs.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tillbridge.cli.common import handle_errors, out, run_async
from tillbridge.cli.serve import start_worker
from tillbridge.domain.states import FINAL_STATES, PaymentState

if TYPE_CHECKING:
    import httpx2

    from tillbridge.simulators.zvt import SimulatorHandle


@dataclass(frozen=True)
class Scenario:
    title: str
    amount: int
    expect: PaymentState
    terminal: str | None = None


SCENARIOS = (
    Scenario("ordinary card payment", 1234, PaymentState.CAPTURED),
    Scenario("declined by the provider (..51)", 2051, PaymentState.DECLINED),
    Scenario("timeout after sending (..99), recovered", 3099, PaymentState.CAPTURED),
)
TERMINAL = "lane1"
TERMINAL_SCENARIOS = (
    Scenario("card on terminal lane1, events streamed", 1500, PaymentState.CAPTURED, TERMINAL),
    Scenario("link cut after approval (..98), recovered", 2598, PaymentState.CAPTURED, TERMINAL),
    Scenario("declined by the card issuer (..51)", 4051, PaymentState.DECLINED, TERMINAL),
)
#: The longest the demo waits for the worker to settle everything.
DEADLINE_S = 60.0


@handle_errors
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="keep the demo database as ./var/demo.db")
    ] = False,
) -> None:
    """A scripted end-to-end run on its own bridge and database, with a summary.

    It does not use or change a running bridge: it starts one of its own in this process, with
    a throwaway database (removed at the end unless --keep), the sandbox connector and a
    simulated ZVT terminal.
    """
    if keep:
        code = run_async(run_demo(out, workdir=Path("var"), keep=True))
    else:
        with tempfile.TemporaryDirectory(prefix="tillbridge-demo-") as tmp:
            code = run_async(run_demo(out, workdir=Path(tmp)))
    raise typer.Exit(code)


async def run_demo(out: Console, *, workdir: Path, keep: bool = False) -> int:
    """Run the demo in ``workdir`` (its database lives there; the caller removes a throwaway
    one); return the process exit code (0 when every payment ended as expected)."""
    import httpx2

    from tillbridge.api.app import create_app
    from tillbridge.app.registry import default_registry
    from tillbridge.app.runtime import build_runtime
    from tillbridge.config import MerchantConfig
    from tillbridge.connectors.terminals.zvt.connector import ZvtTerminalConfig
    from tillbridge.observability.logging import configure_logging
    from tillbridge.services import apikeys
    from tillbridge.settings import load_settings
    from tillbridge.simulators.zvt import serve_tcp
    from tillbridge.store.migrate import upgrade

    tmp = workdir
    tmp.mkdir(parents=True, exist_ok=True)
    db_path = tmp / ("demo.db" if keep else "tillbridge.db")
    if keep:  # a fresh run each time; --keep keeps the last one to look at
        for suffix in ("", "-wal", "-shm", ".intake-lock"):
            db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
    url = f"sqlite:///{db_path}"
    sim = await serve_tcp("127.0.0.1", 0)
    where = f"{db_path} (kept)" if keep else "a throwaway database (removed at the end)"
    out.print(
        f"[bold]tillbridge demo[/]: its own bridge in this process, on {where}, with the sandbox "
        f"connector 'fake' and a simulated ZVT terminal '{TERMINAL}' on 127.0.0.1:{sim.port}. "
        "A bridge you started with `make run` or `tillbridge serve` is not used or changed.",
        highlight=False,
    )
    await asyncio.to_thread(upgrade, url)
    settings = load_settings(database_url=url, config=tmp / "no-config.toml")
    config = MerchantConfig(
        connectors=dict(default_registry().default_config().connectors),
        terminals={TERMINAL: ZvtTerminalConfig(host="127.0.0.1", port=sim.port or 0)},
    )
    rt = build_runtime(settings, config)
    # The summary is the output; the worker's own log lines would only interleave with it.
    configure_logging(log_level="warning", redactor=rt.redactor)
    stop = asyncio.Event()
    worker = start_worker(rt, stop)
    results: list[tuple[Scenario, dict[str, Any]]] = []
    replay_ok = False
    streamed: list[str] = []
    receipt: list[str] = []
    try:
        async with rt.db.write() as conn:
            _, key = await apikeys.create_key(conn, "demo", ["admin"])
        transport = httpx2.ASGITransport(app=create_app(rt))
        async with httpx2.AsyncClient(
            transport=transport,
            base_url="http://demo",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            ids: list[str] = []
            for i, sc in enumerate(SCENARIOS):
                body = {
                    "amount": sc.amount,
                    "currency": "EUR",
                    "reference": f"DEMO-{i + 1}",
                    "connector": "fake",
                    "metadata": {"scenario": sc.title},
                }
                r = await client.post(
                    "/v1/payments", json=body, headers={"Idempotency-Key": f"demo-{i}"}
                )
                r.raise_for_status()
                ids.append(r.json()["id"])
                out.print(f"  created {r.json()['id']}  {sc.amount / 100:>7.2f} EUR  {sc.title}")
                if i == 0:
                    again = await client.post(
                        "/v1/payments", json=body, headers={"Idempotency-Key": f"demo-{i}"}
                    )
                    replay_ok = (
                        again.headers.get("Idempotent-Replayed") == "true"
                        and again.json()["id"] == r.json()["id"]
                    )
            for i, sc in enumerate(TERMINAL_SCENARIOS):
                body = {"amount": sc.amount, "currency": "EUR", "reference": f"BON-{i + 1}"}
                r = await client.post(
                    f"/v1/terminals/{TERMINAL}/payments",
                    json=body,
                    headers={"Idempotency-Key": f"demo-terminal-{i}"},
                )
                r.raise_for_status()
                ids.append(r.json()["id"])
                out.print(f"  created {r.json()['id']}  {sc.amount / 100:>7.2f} EUR  {sc.title}")
            # The event stream of the first terminal payment, from the start until it ends.
            streamed = await _stream_events(client, ids[len(SCENARIOS)])
            final = await _wait_settled(out, client, ids)
            results = list(zip((*SCENARIOS, *TERMINAL_SCENARIOS), final, strict=True))
            details = await client.get(f"/v1/payments/{ids[len(SCENARIOS)]}/terminal")
            receipt = list(details.json()["terminal"]["customer_receipt"])
    finally:
        stop.set()
        await worker
        await rt.close()
        await sim.close()
    return _summary(out, results, replay_ok, streamed, receipt, sim)


async def _stream_events(client: httpx2.AsyncClient, pid: str) -> list[str]:
    """``GET /v1/payments/{id}/events`` until the stream ends; one line per event."""
    lines: list[str] = []
    async with client.stream("GET", f"/v1/payments/{pid}/events") as r:
        event = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event != "end":
                data = json.loads(line.removeprefix("data: "))
                lines.append(f"{event:<12} {data['text']}")
    return lines


def _summary(
    out: Console,
    results: list[tuple[Scenario, dict[str, Any]]],
    replay_ok: bool,
    streamed: list[str],
    receipt: list[str],
    sim: SimulatorHandle,
) -> int:
    table = Table(title="payments")
    for col in ("payment", "connector", "amount", "scenario", "state", "expected", ""):
        table.add_column(col)
    ok = replay_ok
    for sc, p in results:
        good = p["state"] == sc.expect
        ok = ok and good
        table.add_row(
            p["id"],
            p["connector"],
            f"{p['amount'] / 100:.2f} {p['currency']}",
            sc.title,
            p["state"],
            str(sc.expect),
            "[green]ok[/]" if good else "[red]UNEXPECTED[/]",
        )
    out.print(table)
    if streamed:
        out.print(f"events of the first terminal payment ({len(streamed)}, streamed as SSE):")
        for line in [*streamed[:6], "...", *streamed[-3:]]:
            out.print(f"  {line}", highlight=False, markup=False)
    if receipt:
        out.print("its customer receipt (card number masked):")
        for line in receipt:
            out.print(f"  | {line}", highlight=False, markup=False)
    approved = sum(1 for sc, p in results if sc.terminal and p["state"] == "captured")
    charges = sim.terminal.charges
    charged_once = bool(results) and charges == approved
    ok = ok and charged_once and bool(streamed)
    out.print(
        f"terminal {TERMINAL} charged cards {charges} times for {approved} approved payments: "
        + ("[green]each exactly once[/]" if charged_once else "[red]MISMATCH[/]")
    )
    out.print(
        "idempotent replay returned the same payment: "
        + ("[green]yes[/]" if replay_ok else "[red]no[/]")
    )
    out.print("[bold green]demo passed[/]" if ok else "[bold red]demo failed[/]")
    return 0 if ok else 1


async def _wait_settled(
    out: Console, client: httpx2.AsyncClient, ids: list[str]
) -> list[dict[str, Any]]:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    final_names = {str(s) for s in FINAL_STATES} | {str(PaymentState.CAPTURED)}
    start = time.monotonic()
    latest: list[dict[str, Any]] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} settled"),
        console=out,
        transient=True,
    ) as progress:
        task = progress.add_task("worker settling payments", total=len(ids))
        while True:
            latest = [(await client.get(f"/v1/payments/{pid}")).json() for pid in ids]
            done = sum(p["state"] in final_names for p in latest)
            states = ", ".join(p["state"] for p in latest)
            progress.update(
                task, completed=done, description=f"worker settling payments ({states})"
            )
            if done == len(ids) or time.monotonic() - start > DEADLINE_S:
                return latest
            await asyncio.sleep(0.2)
