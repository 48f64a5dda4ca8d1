"""Configuration traps as an operator meets them (issue 13.8 to 13.14): one clear line and exit
code 1, never a traceback; ``config check --no-secrets`` for the structure alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tillbridge.cli import app

EXAMPLE = Path(__file__).resolve().parents[3] / "tillbridge.example.toml"
TB = [sys.executable, "-m", "tillbridge.cli"]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in list(os.environ):
        if name.startswith("TILLBRIDGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TILLBRIDGE_DATABASE_URL", f"sqlite:///{tmp_path / 'var' / 'tb.db'}")
    return CliRunner()


def test_the_example_config_checks_structurally_as_its_header_says(cli: CliRunner) -> None:
    header = EXAMPLE.read_text().splitlines()[:6]
    assert any("config check --no-secrets" in line for line in header)
    ok = cli.invoke(app, ["config", "check", "--no-secrets", str(EXAMPLE)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.stdout and "secrets not read" in ok.stdout


def test_a_full_check_names_each_secret_with_the_right_fix(cli: CliRunner) -> None:
    r = cli.invoke(app, ["config", "check", str(EXAMPLE)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    text = r.stderr
    assert "erp.xentral.api_key: cannot read secret file /run/secrets/xentral_api_key" in text
    # a file secret's fix talks about the file, not about the environment
    file_fix = text.split("/run/secrets/xentral_api_key: ", 1)[1].split("\n")[1]
    assert "create the file /run/secrets/xentral_api_key" in file_fix
    assert "environment variable" not in file_fix
    assert "set the environment variable TILLBRIDGE_ZVT_PASSWORD" in text
    assert "--no-secrets" in text


def test_a_named_config_that_does_not_exist_fails_config_check(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TILLBRIDGE_CONFIG", str(tmp_path / "tilbridge.toml"))
    r = cli.invoke(app, ["config", "check"])
    assert r.exit_code == 1 and "does not exist" in r.stderr
    assert "TILLBRIDGE_CONFIG" in r.stderr


def test_no_file_at_the_default_path_is_the_sandbox_not_an_error(cli: CliRunner) -> None:
    r = cli.invoke(app, ["config", "check"])
    assert r.exit_code == 0 and "built-in sandbox connector 'fake'" in r.stdout


def test_config_check_reports_bad_environment_settings(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TILLBRIDGE_PORT", "abc")
    monkeypatch.setenv("TILLBRIDGE_MAX_BODY_BYTES", "-1")
    r = cli.invoke(app, ["config", "check"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "environment: TILLBRIDGE_PORT=abc" in r.stderr
    assert "environment: TILLBRIDGE_MAX_BODY_BYTES=-1" in r.stderr


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLBRIDGE_")}
    env.update(
        TILLBRIDGE_DATABASE_URL=f"sqlite:///{tmp_path / 'var' / 'tb.db'}",
        TILLBRIDGE_CONFIG=str(tmp_path / "tillbridge.toml"),
        NO_COLOR="1",
    )
    return {**env, **extra}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"TILLBRIDGE_PORT": "abc"}, "TILLBRIDGE_PORT=abc"),
        ({"TILLBRIDGE_LOG_FORMAT": "xml"}, "TILLBRIDGE_LOG_FORMAT=xml"),
        ({"TILLBRIDGE_DATABASE_URL": "mysql://u@h/db"}, "TILLBRIDGE_DATABASE_URL=mysql://"),
        ({"TILLBRIDGE_CONFIG": "/nonexistent/tillbridge.toml"}, "does not exist"),
    ],
    ids=["port", "log-format", "database", "config-file"],
)
def test_serve_refuses_bad_settings_with_one_line(
    tmp_path: Path, extra: dict[str, str], words: str
) -> None:
    subprocess.run([*TB, "db", "upgrade"], env=_env(tmp_path), check=True, capture_output=True)
    r = subprocess.run(
        [*TB, "serve", "--port", "0"],
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and words in r.stderr


def test_serve_starts_without_a_terminal_password_and_says_what_it_stops(
    tmp_path: Path,
) -> None:
    (tmp_path / "tillbridge.toml").write_text(
        '[terminals.lane1]\ntype = "zvt"\nhost = "127.0.0.1"\n'
        'password = { env = "TB_TEST_UNSET_ZVT_PASSWORD" }\n'
        '[connectors.fake]\ntype = "fake"\n'
    )
    env = _env(tmp_path)
    subprocess.run([*TB, "db", "upgrade"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [*TB, "serve", "--port", "0"], env=env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    banner: list[str] = []
    try:
        for line in proc.stderr:
            banner.append(line)
            if line.startswith("  try:"):
                break
        for line in proc.stderr:  # the warnings follow the banner's last regular line
            banner.append(line)
            if "warning:" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proc.stderr.close()
    text = "".join(banner)
    assert "listening on" in text, text
    assert (
        "warning:    terminals.lane1.password: environment variable TB_TEST_UNSET_ZVT_PASSWORD "
        "is not set: payments on lane1 are refused until it is provided"
    ) in text
