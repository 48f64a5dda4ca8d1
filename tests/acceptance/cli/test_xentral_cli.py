"""Xentral end to end, as an operator drives it: real processes, a real database file.

``tillbridge serve`` receives what ``tillbridge simulate xentral`` sends; a worker processes the
inbox; the write-back reaches ``tillbridge simulate xentral-api`` over real HTTP; the operator
inspects and replays with ``tillbridge webhooks``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx2
import pytest
from sqlalchemy import create_engine

from tillbridge.app.jobs import build_registry
from tillbridge.app.runtime import build_runtime
from tillbridge.queue import Worker
from tillbridge.settings import Settings
from tillbridge.store.db import sync_url
from tillbridge.store.schema import all_tables

TB = [sys.executable, "-m", "tillbridge.cli"]
KEY = "acceptance-xentral-key-01"
TOKEN = "acceptance-xentral-token"


def run(
    args: list[str], env: dict[str, str], check: bool = False
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([*TB, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"{args} failed: {res.stdout}\n{res.stderr}")
    return res


def wait_for_line(stream: IO[str], marker: str) -> str:
    """Read ``stream`` until a line contains ``marker`` (printed once the socket is bound)."""
    seen = []
    for line in stream:
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError("process ended before it was ready:\n" + "".join(seen))


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TILLBRIDGE_")}
    e.update(
        TILLBRIDGE_DATABASE_URL=f"sqlite:///{tmp_path / 'var' / 'tb.db'}",
        TILLBRIDGE_CONFIG=str(tmp_path / "tillbridge.toml"),
        TILLBRIDGE_SIM_XENTRAL_SECRET=KEY,
        TILLBRIDGE_SIM_XENTRAL_TOKEN=TOKEN,
        XENTRAL_WEBHOOK_KEY=KEY,
        XENTRAL_API_TOKEN=TOKEN,
        NO_COLOR="1",
        COLUMNS="200",
    )
    for k in ("XENTRAL_WEBHOOK_KEY", "XENTRAL_API_TOKEN"):
        monkeypatch.setenv(k, e[k])
    yield e


@pytest.fixture
def xentral_api(env: dict[str, str]) -> Iterator[str]:
    proc = subprocess.Popen(
        [*TB, "simulate", "xentral-api", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = wait_for_line(proc.stderr, "Uvicorn running on")
    url = line.split("running on ")[1].split()[0]
    try:
        yield url
    finally:
        stop(proc)
        proc.stderr.close()


def write_config(env: dict[str, str], xentral_url: str) -> None:
    Path(env["TILLBRIDGE_CONFIG"]).write_text(
        f"""
[stores.shop]
name = "Shop"

[registers.lane1]
store = "shop"
xentral_project = "1"

# A test installation: the register has no terminal, so sales run on the sandbox on purpose.
[connectors.fake]
type = "fake"

[erp.xpos]
type = "xentral"
url = "{xentral_url}"
api_key = {{ env = "XENTRAL_API_TOKEN" }}
webhook_secrets = [{{ env = "XENTRAL_WEBHOOK_KEY" }}]
"""
    )


def prepare_database(env: dict[str, str]) -> None:
    run(["db", "upgrade"], env, check=True)
    # Tables added after the last generated migration (the lead regenerates migrations).
    engine = create_engine(sync_url(env["TILLBRIDGE_DATABASE_URL"]))
    all_tables().create_all(engine, checkfirst=True)
    engine.dispose()


@pytest.mark.anyio
async def test_simulated_xentral_sales_are_received_processed_and_written_back(
    env: dict[str, str], xentral_api: str
) -> None:
    write_config(env, xentral_api)
    assert "OK" in run(["config", "check"], env, check=True).stdout
    prepare_database(env)
    serve = subprocess.Popen(
        [*TB, "serve", "--port", "0", "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert serve.stderr is not None
    try:
        base = wait_for_line(serve.stderr, "listening on").split("listening on ")[1].split()[0]
        sim = ["simulate", "xentral", "--url", base, "--account", "xpos", "--rate", "100/s"]
        good = run([*sim, "--count", "5", "--duplicate", "--amount", "12.34"], env, check=True)
        assert "accepted (stored)" in good.stdout and "10 requests" in good.stdout
        bad = run([*sim, "--count", "2", "--bad-signature"], env, check=True)
        assert "signature rejected" in bad.stdout and "401" in bad.stdout
        stale = run([*sim, "--count", "1", "--stale"], env, check=True)
        assert "401" in stale.stdout
    finally:
        assert stop(serve) == 0
        serve.stderr.close()

    # Everything that got a 200 is in the inbox; a worker now processes it exactly once.
    rt = build_runtime(
        Settings(database_url=env["TILLBRIDGE_DATABASE_URL"], config=Path(env["TILLBRIDGE_CONFIG"]))
    )
    try:
        await Worker(rt.db, build_registry(rt), scheduler=False).run_until_idle()
    finally:
        await rt.close()

    listed = json.loads(run(["webhooks", "list", "--json"], env, check=True).stdout)
    assert len(listed) == 5 and {i["status"] for i in listed} == {"processed"}
    shown = json.loads(
        run(["webhooks", "show", str(listed[0]["id"]), "--json"], env, check=True).stdout
    )
    document = json.loads(shown["body"])["body"]["documentNumber"]
    assert shown["verification"]["scheme"] == "xentral"
    with httpx2.Client(base_url=xentral_api, timeout=10) as c:
        invoice = c.get(
            f"/api/v3/invoices/{document}", headers={"authorization": f"Bearer {TOKEN}"}
        ).json()["data"]
    assert invoice["paymentStatus"] == "paid"
    assert invoice["dunningManualSettings"]["actualAmount"] == {
        "amount": "12.34",
        "currency": "EUR",
    }

    replay = run(["webhooks", "replay", str(listed[0]["id"])], env, check=True)
    assert "queued again" in replay.stdout
    busy = run(["webhooks", "replay", str(listed[0]["id"])], env)
    assert busy.returncode == 4 and "already queued" in busy.stderr
    missing = run(["webhooks", "show", "99999"], env)
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
    table = run(["webhooks", "list"], env, check=True).stdout
    assert "processed" in table and "xpos" in table
    assert run(["webhooks", "deliveries"], env, check=True).returncode == 0
    assert run(["webhooks", "subscribers", "--json"], env, check=True).stdout.strip() == "[]"
