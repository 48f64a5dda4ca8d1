"""The terminal CLI as a user drives it: real processes, a real database file.

* ``tillbridge simulate zvt``: a real ZVT client pays against it over TCP;
* ``tillbridge terminals list|show|end-of-day`` against a running worker (in-process through
  typer's runner, to keep the suite fast; ``list`` once more as a real process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine
from typer.testing import CliRunner

from tillbridge.app.jobs import build_registry
from tillbridge.app.runtime import build_runtime
from tillbridge.cli import app
from tillbridge.cli import app as cli_app
from tillbridge.connectors.terminals.zvt import ZvtTerminal
from tillbridge.connectors.terminals.zvt.requests import PurchaseRequest
from tillbridge.money import Money
from tillbridge.queue import Worker
from tillbridge.settings import Settings
from tillbridge.store.migrate import _config
from tillbridge.store.schema import all_tables

TB = [sys.executable, "-m", "tillbridge.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TB, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TILLBRIDGE_")}
    url = f"sqlite:///{tmp_path / 'tb.db'}"
    e["TILLBRIDGE_DATABASE_URL"] = url
    e["TILLBRIDGE_CONFIG"] = str(tmp_path / "tillbridge.toml")
    e["NO_COLOR"] = "1"
    e["COLUMNS"] = "200"
    (tmp_path / "tillbridge.toml").write_text(
        '[terminals.lane1]\nprotocol = "fake"\ncurrency = "EUR"\n'
    )
    # The current schema, marked as migrated (the same tables the migrations create).
    engine = create_engine(url)
    all_tables().create_all(engine)
    with engine.begin() as conn:
        cfg = _config()
        cfg.attributes["connection"] = conn
        command.stamp(cfg, "head")
    engine.dispose()
    return e


class ThreadWorker:
    """A bridge worker on its own event loop in a thread (the CLI runs its own loops)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        rt = build_runtime(
            Settings(database_url=self.env["TILLBRIDGE_DATABASE_URL"],
                     config=Path(self.env["TILLBRIDGE_CONFIG"]))
        )  # fmt: skip
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        self.ready.set()
        try:
            await Worker(rt.db, build_registry(rt), poll_interval=0.02).run(self.stop)
        finally:
            await rt.close()

    def __enter__(self) -> ThreadWorker:
        self.thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.loop is not None and self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


def test_terminals_list_show_and_end_of_day(env: dict[str, str]) -> None:
    runner = CliRunner()
    listing = runner.invoke(app, ["terminals", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    assert "lane1" in listing.output and "fake" in listing.output
    with ThreadWorker(env):
        eod = runner.invoke(app, ["terminals", "end-of-day", "lane1", "--timeout", "60"], env=env)
    assert eod.exit_code == 0, eod.output
    assert "succeeded" in eod.output and "total 0 EUR" in eod.output
    show = runner.invoke(app, ["terminals", "show", "lane1"], env=env)
    assert show.exit_code == 0 and "last end of day" in show.output
    assert "online: True" in show.output
    unknown = runner.invoke(app, ["terminals", "show", "nope"], env=env)
    assert unknown.exit_code == 1 and "no terminal named 'nope'" in unknown.output


def test_terminals_list_in_a_real_process(env: dict[str, str]) -> None:
    res = run(["terminals", "list"], env)
    assert res.returncode == 0, res.stderr
    assert "lane1" in res.stdout and "never" in res.stdout


@pytest.mark.anyio
async def test_simulate_zvt_serves_a_real_client() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tillbridge.cli", "simulate", "zvt", "--tcp", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert first.startswith("ZVT terminal simulator listening on tcp://127.0.0.1:"), first
        port = int(first.rsplit(":", 1)[1])
        zvt = ZvtTerminal.tcp("127.0.0.1", port)
        ok = await zvt.purchase(PurchaseRequest(Money(1234, "EUR"), "cli-test"))
        declined = await zvt.purchase(PurchaseRequest(Money(1052, "EUR"), "cli-test-2"))
        assert (str(ok.outcome), str(declined.outcome)) == ("succeeded", "declined")
        proc.send_signal(signal.SIGINT)
        rest = (await asyncio.wait_for(proc.stdout.read(), 30)).decode()
        assert await proc.wait() == 0
        assert "2 transactions, 1 card charges" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_simulate_zvt_rejects_bad_options() -> None:
    runner = CliRunner()
    res = runner.invoke(cli_app, ["simulate", "zvt", "--tcp", "nope"])
    assert res.exit_code == 2 and "HOST:PORT" in res.output
    both = runner.invoke(cli_app, ["simulate", "zvt"])
    assert both.exit_code == 2 and "exactly one of" in both.output
    bad = runner.invoke(cli_app, ["simulate", "zvt", "--tcp", "127.0.0.1:0", "--garbage", "xyz"])
    assert bad.exit_code == 2 and "hex" in bad.output
