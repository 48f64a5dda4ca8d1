"""The CLI as a user drives it: real processes, a real database file, a real HTTP server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

TB = [sys.executable, "-m", "tillbridge.cli"]


def run(
    args: list[str], env: dict[str, str], check: bool = False
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*TB, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if check and res.returncode != 0:
        raise AssertionError(f"{args} failed: {res.stdout}\n{res.stderr}")
    return res


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TILLBRIDGE_")}
    e["TILLBRIDGE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'var' / 'tb.db'}"
    e["TILLBRIDGE_CONFIG"] = str(tmp_path / "tillbridge.toml")
    # A file named in TILLBRIDGE_CONFIG must exist: this one is the built-in default, written out.
    (tmp_path / "tillbridge.toml").write_text('[connectors.fake]\ntype = "fake"\n')
    e["NO_COLOR"] = "1"
    return e


def test_db_upgrade_current_and_apikey(env: dict[str, str]) -> None:
    res = run(["db", "current"], env)
    assert res.returncode == 1 and "tillbridge db upgrade" in res.stderr
    run(["db", "upgrade"], env, check=True)
    assert run(["db", "upgrade"], env, check=True).returncode == 0  # idempotent
    assert "head" in run(["db", "current"], env, check=True).stdout
    res = run(["apikey", "create", "--name", "pos", "--scope", "payments:write"], env, check=True)
    key = res.stdout.strip().splitlines()[-1]
    assert key.startswith("tb_") and " " not in key
    listing = run(["apikey", "list"], env, check=True).stdout
    assert "pos" in listing and key not in listing  # the secret is never shown again
    bad = run(["apikey", "create", "--name", "x", "--scope", "everything"], env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_config_check_reports_position_and_fix(env: dict[str, str], tmp_path: Path) -> None:
    cfg = Path(env["TILLBRIDGE_CONFIG"])
    cfg.write_text('[connectors.fake]\ntype = "fake"\nlatncy_ms = 3\n')
    res = run(["config", "check"], env)
    assert res.returncode == 1
    assert f"{cfg}:3" in res.stderr and "fix:" in res.stderr
    cfg.write_text('[connectors.fake]\ntype = "fake"\n')
    assert "OK" in run(["config", "check"], env, check=True).stdout


def test_serve_refuses_an_out_of_date_schema(env: dict[str, str]) -> None:
    res = run(["serve", "--port", "0"], env)
    assert res.returncode == 1
    assert "tillbridge db upgrade" in res.stderr and "Traceback" not in res.stderr


@pytest.fixture
def server(env: dict[str, str]) -> Iterator[tuple[str, str]]:
    run(["db", "upgrade"], env, check=True)
    key = run(["apikey", "create", "--name", "t", "--scope", "admin"], env, check=True)
    token = key.stdout.strip().splitlines()[-1]
    # The configured port is taken (say, by a `make run` next to `make test`): --port 0 must
    # still start, on a free port of its own (issue 13.7).
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    env = {**env, "TILLBRIDGE_PORT": str(taken.getsockname()[1])}
    proc = subprocess.Popen(
        [*TB, "serve", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    base = None
    seen = []
    for line in proc.stderr:  # the banner is printed once the socket is bound
        seen.append(line)
        if "listening on" in line:
            base = line.split("listening on ")[1].split()[0]
            break
    try:
        assert base, "".join(seen)
        assert base.rsplit(":", 1)[1] != env["TILLBRIDGE_PORT"]
        yield base, token
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        proc.stderr.close()
        taken.close()
        assert code == 0  # a graceful stop


def test_serve_takes_a_payment_and_replays_it(server: tuple[str, str]) -> None:
    base, token = server
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k-1"}
    body = {"amount": 1234, "currency": "EUR", "reference": "SO042", "connector": "fake"}
    with httpx2.Client(base_url=base, timeout=30) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        first = c.post("/v1/payments", json=body, headers=headers)
        assert first.status_code == 201, first.text
        again = c.post("/v1/payments", json=body, headers=headers)
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.content == first.content
        listing = c.get("/v1/payments", params={"reference": "SO042"}, headers=headers).json()
        assert [p["id"] for p in listing["data"]] == [first.json()["id"]]
        metrics = c.get("/metrics").text
        assert "tillbridge_http_requests_total" in metrics
        assert "tillbridge_jobs" in metrics
        assert json.loads(c.get("/openapi.json").text)["paths"]["/v1/payments"]


def test_demo_passes_says_it_is_its_own_bridge_and_leaves_nothing_behind(
    env: dict[str, str], tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    res = run(["demo"], {**env, "TMPDIR": str(scratch)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "demo passed" in res.stdout
    assert "its own bridge" in res.stdout and "is not used or changed" in res.stdout
    assert list(scratch.iterdir()) == []  # its throwaway database is gone (issue 13.17)
    assert not Path(env["TILLBRIDGE_DATABASE_URL"].removeprefix("sqlite:///")).exists()
