"""``tillbridge connectors list|types`` as an operator runs them.

Most cases run in-process through typer's runner (fast); the real-process cases check what the
installed command prints and that a bad configuration never ends in a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from tillbridge.cli import app
from tillbridge.payments.contract import Capabilities
from tillbridge.store.schema import all_tables

TB = [sys.executable, "-m", "tillbridge.cli"]
#: An environment variable no test machine sets: the ZVT password that does not resolve.
MISSING_PW = "TILLBRIDGE_TEST_UNSET_ZVT_PASSWORD"

FAKE_AND_LANE = '[connectors.fake]\ntype = "fake"\n\n[terminals.lane1]\ntype = "fake"\n'
ZVT_WITHOUT_PASSWORD = (
    '[terminals.counter]\ntype = "zvt"\nhost = "127.0.0.1"\n'
    f'password = {{ env = "{MISSING_PW}" }}\n'
)
XENTRAL = (
    '[erp.shop]\ntype = "xentral"\nurl = "https://shop.example.com"\n'
    'api_key = { env = "TILLBRIDGE_TEST_XENTRAL_KEY" }\n'
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A config file path (written by each test) and a database with the current schema."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("TILLBRIDGE_")}
    url = f"sqlite:///{tmp_path / 'tb.db'}"
    e["TILLBRIDGE_DATABASE_URL"] = url
    e["TILLBRIDGE_CONFIG"] = str(tmp_path / "tillbridge.toml")
    e["NO_COLOR"] = "1"
    e["COLUMNS"] = "200"
    engine = create_engine(url)
    all_tables().create_all(engine)
    engine.dispose()
    return e


def write_config(env: dict[str, str], text: str) -> Path:
    path = Path(env["TILLBRIDGE_CONFIG"])
    path.write_text(text)
    return path


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TB, *args], env=env, capture_output=True, text=True, timeout=120)


def invoke(args: list[str], env: dict[str, str]) -> Any:
    # The runner only adds to os.environ: name the variables a test relies on being unset.
    overrides: dict[str, str | None] = {**env, MISSING_PW: None}
    return CliRunner().invoke(app, args, env=overrides)


def listing(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    res = invoke(["connectors", "list", "--json"], env)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert isinstance(rows, list)
    return {r["name"]: r for r in rows}


# connectors list -------------------------------------------------------------------------------


def test_list_shows_connectors_and_terminals_with_family_and_capabilities(
    env: dict[str, str],
) -> None:
    write_config(env, FAKE_AND_LANE)
    rows = listing(env)
    assert set(rows) == {"fake", "lane1"}
    fake, lane = rows["fake"], rows["lane1"]
    assert (fake["section"], fake["type"], fake["family"]) == ("connectors", "fake", "online")
    assert (lane["section"], lane["type"], lane["family"]) == ("terminals", "fake", "card_present")
    # Capabilities as Capabilities.as_dict(): every field, the ones that are on set.
    assert set(fake["capabilities"]) == set(Capabilities().as_dict())
    assert fake["capabilities"]["refund"] is True and fake["capabilities"]["settle"] is False
    assert lane["capabilities"]["settle"] is True and lane["capabilities"]["events"] is True
    assert fake["health"] == lane["health"] == "ok"
    # The terminal's persisted contact state: it has never been reached.
    assert lane["online"] is None and lane["last_error"] is None
    # Every row has the same keys.
    assert set(fake) == set(lane)


def test_list_table_in_process(env: dict[str, str]) -> None:
    write_config(env, FAKE_AND_LANE)
    res = invoke(["connectors", "list"], env)
    assert res.exit_code == 0, res.output
    for text in ("lane1", "fake", "card_present", "online", "settle", "ok", "never contacted"):
        assert text in res.stdout, res.stdout


def test_list_as_a_real_process(env: dict[str, str]) -> None:
    write_config(env, FAKE_AND_LANE)
    table = run(["connectors", "list"], env)
    assert table.returncode == 0, table.stderr
    lines = {line.split()[1]: line for line in table.stdout.splitlines() if "│ " in line[:3]}
    assert "connectors" in lines["fake"] and "online" in lines["fake"]
    assert "terminals" in lines["lane1"] and "card_present" in lines["lane1"]
    assert "never contacted" in lines["lane1"]
    as_json = run(["connectors", "list", "--json"], env)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [(r["name"], r["family"]) for r in rows] == [
        ("fake", "online"),
        ("lane1", "card_present"),
    ]


def test_a_terminal_whose_password_is_unset_shows_it_as_its_health(env: dict[str, str]) -> None:
    write_config(env, FAKE_AND_LANE + "\n" + ZVT_WITHOUT_PASSWORD)
    rows = listing(env)
    counter = rows["counter"]
    assert (counter["type"], counter["family"]) == ("zvt", "card_present")
    assert counter["health"] == f"environment variable {MISSING_PW} is not set"
    assert counter["link"] == "tcp://127.0.0.1:20007"
    assert rows["lane1"]["health"] == "ok"  # one broken terminal, the others still listed
    table = invoke(["connectors", "list"], env)
    assert table.exit_code == 0 and MISSING_PW in table.stdout


def test_erp_entries_are_listed_with_their_type_and_health(env: dict[str, str]) -> None:
    write_config(env, FAKE_AND_LANE + "\n" + XENTRAL)
    with_key = {**env, "TILLBRIDGE_TEST_XENTRAL_KEY": "k"}
    shop = listing(with_key)["shop"]
    assert (shop["section"], shop["type"], shop["family"]) == ("erp", "xentral", None)
    assert shop["health"] == "ok" and shop["capabilities"] == {}
    res = CliRunner().invoke(
        app, ["connectors", "list", "--json"], env={**env, "TILLBRIDGE_TEST_XENTRAL_KEY": None}
    )
    assert res.exit_code == 0, res.output
    shop = {r["name"]: r for r in json.loads(res.stdout)}["shop"]
    assert shop["health"] == "api_key: environment variable TILLBRIDGE_TEST_XENTRAL_KEY is not set"


def test_without_a_schema_the_listing_still_works_without_contact_state(
    env: dict[str, str], tmp_path: Path
) -> None:
    write_config(env, FAKE_AND_LANE)
    bare = {**env, "TILLBRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    res = invoke(["connectors", "list"], bare)
    assert res.exit_code == 0, res.output
    assert "lane1" in res.stdout and "terminal contact state not read" in res.stderr


def test_without_a_config_file_the_builtin_sandbox_is_listed(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default path, ./tillbridge.toml: no file there
    res = CliRunner().invoke(
        app,
        ["connectors", "list", "--json"],
        env={**env, "TILLBRIDGE_CONFIG": None, MISSING_PW: None},
    )
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert list(rows) == ["fake"] and rows["fake"]["health"] == "ok"


def test_a_named_config_file_that_does_not_exist_is_an_error(env: dict[str, str]) -> None:
    res = invoke(["connectors", "list"], env)  # the fixture names a file it does not write
    assert res.exit_code == 1 and "does not exist" in res.stderr
    assert "Traceback" not in res.output


def test_an_unknown_type_is_one_error_with_its_position_and_no_traceback(
    env: dict[str, str],
) -> None:
    cfg = write_config(env, FAKE_AND_LANE + '\n[providers.x]\ntype = "afterpay"\n')
    res = run(["connectors", "list"], env)
    assert res.returncode == 1
    assert "not available in this build" in res.stderr
    assert f"{cfg}:7: providers.x" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    in_process = invoke(["connectors", "list", "--json"], env)
    assert in_process.exit_code == 1 and "not available in this build" in in_process.stderr


# connectors types ------------------------------------------------------------------------------


def test_types_lists_what_this_build_knows_per_section(env: dict[str, str]) -> None:
    res = invoke(["connectors", "types", "--json"], env)
    assert res.exit_code == 0, res.output
    known = {(r["section"], r["type"]): r for r in json.loads(res.stdout)}
    assert {("terminals", "zvt"), ("terminals", "fake"), ("erp", "xentral")} <= set(known)
    assert known[("terminals", "zvt")]["family"] == "card_present"
    assert known[("erp", "xentral")]["family"] is None
    assert all(r["summary"] for r in known.values())


def test_types_as_a_real_process(env: dict[str, str]) -> None:
    res = run(["connectors", "types"], env)
    assert res.returncode == 0, res.stderr
    rows = [line.split("│")[1:3] for line in res.stdout.splitlines() if line.startswith("│")]
    pairs = {(section.strip(), kind.strip()) for section, kind in rows}
    assert {("terminals", "zvt"), ("terminals", "fake"), ("erp", "xentral")} <= pairs
