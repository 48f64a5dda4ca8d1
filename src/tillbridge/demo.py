"""``tillbridge demo``: a scripted end-to-end run that shows what the bridge does, with a summary.

It starts a bridge in-process on a throwaway SQLite database with the built-in sandbox
connector, creates an API key, sends payments through the real HTTP API (one succeeds, one is
declined, one times out after sending and is recovered by a status query), replays a request with
the same Idempotency-Key, and waits, with progress, until the worker has settled everything.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from tillbridge.api.app import create_app
from tillbridge.config import DEFAULT_CONFIG
from tillbridge.domain.states import FINAL_STATES, PaymentState
from tillbridge.observability.logging import configure_logging
from tillbridge.runtime import build_runtime
from tillbridge.server import start_worker
from tillbridge.services import apikeys
from tillbridge.settings import load_settings
from tillbridge.store.migrate import upgrade


@dataclass(frozen=True)
class Scenario:
    title: str
    amount: int
    expect: PaymentState


SCENARIOS = (
    Scenario("ordinary card payment", 1234, PaymentState.CAPTURED),
    Scenario("declined by the provider (..51)", 2051, PaymentState.DECLINED),
    Scenario("timeout after sending (..99), recovered", 3099, PaymentState.CAPTURED),
)
#: The longest the demo waits for the worker to settle everything.
DEADLINE_S = 60.0


async def run_demo(out: Console, *, keep: bool = False) -> int:
    """Run the demo; return the process exit code (0 when every payment ended as expected)."""
    tmp = Path("var") if keep else Path(tempfile.mkdtemp(prefix="tillbridge-demo-"))
    tmp.mkdir(parents=True, exist_ok=True)
    db_path = tmp / ("demo.db" if keep else "tillbridge.db")
    url = f"sqlite:///{db_path}"
    out.print(f"[bold]tillbridge demo[/] on {db_path} with the sandbox connector 'fake'")
    await asyncio.to_thread(upgrade, url)
    settings = load_settings(database_url=url, config=tmp / "no-config.toml")
    rt = build_runtime(settings, DEFAULT_CONFIG)
    # The summary is the output; the worker's own log lines would only interleave with it.
    configure_logging(log_level="warning", redactor=rt.redactor)
    stop = asyncio.Event()
    worker = start_worker(rt, stop)
    results: list[tuple[Scenario, dict[str, Any]]] = []
    replay_ok = False
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
            final = await _wait_settled(out, client, ids)
            results = list(zip(SCENARIOS, final, strict=True))
    finally:
        stop.set()
        await worker
        await rt.close()

    table = Table(title="payments")
    for col in ("payment", "amount", "scenario", "state", "expected", ""):
        table.add_column(col)
    ok = replay_ok
    for sc, p in results:
        good = p["state"] == sc.expect
        ok = ok and good
        table.add_row(
            p["id"],
            f"{p['amount'] / 100:.2f} {p['currency']}",
            sc.title,
            p["state"],
            str(sc.expect),
            "[green]ok[/]" if good else "[red]UNEXPECTED[/]",
        )
    out.print(table)
    out.print(
        "idempotent replay returned the same payment: "
        + ("[green]yes[/]" if replay_ok else "[red]no[/]")
    )
    out.print("[bold green]demo passed[/]" if ok else "[bold red]demo failed[/]")
    return 0 if ok else 1


async def _wait_settled(
    out: Console, client: httpx2.AsyncClient, ids: list[str]
) -> list[dict[str, Any]]:
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
