"""What a newcomer looks for in the CLI (issue 13.16): ``--version``, the payments commands,
and listings that are tables (whole cells, also piped) or JSON, with single, sensible flags."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from support.cli import table_rows
from tillbridge import testing
from tillbridge.cli import app
from tillbridge.config import MerchantConfig
from tillbridge.connectors.gateways.fake import FakeConnectorConfig
from tillbridge.money import Money
from tillbridge.payments.engine import NewPayment
from tillbridge.services import apikeys


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    config = tmp_path / "tillbridge.toml"
    config.write_text('[connectors.fake]\ntype = "fake"\n')
    monkeypatch.setenv("TILLBRIDGE_DATABASE_URL", db_url)
    monkeypatch.setenv("TILLBRIDGE_CONFIG", str(config))
    yield CliRunner()


def seed_payments(url: str) -> list[str]:
    """Two payments through the engine (nothing executes them: they stay ``created``)."""

    async def go() -> list[str]:
        cfg = MerchantConfig(connectors={"fake": FakeConnectorConfig()})
        rt = testing.make_runtime(url, cfg)
        try:
            ids = []
            for i, amount in enumerate((1234, 990)):
                async with rt.db.write() as conn:
                    p = await rt.payments.create(
                        conn,
                        NewPayment(Money(amount, "EUR"), f"SO-{i}", "fake", {"n": i}),
                        actor="test",
                        idempotency_key=None,
                    )
                ids.append(p.id)
            async with rt.db.write() as conn:
                await apikeys.create_key(
                    conn, "a-key-with-a-rather-long-name-for-a-table", ["admin"]
                )
            return ids
        finally:
            await rt.close()

    return asyncio.run(go())


def test_version(cli: CliRunner) -> None:
    r = cli.invoke(app, ["--version"])
    assert r.exit_code == 0
    assert r.stdout.strip() == f"tillbridge {importlib.metadata.version('tillbridge')}"


def test_payments_list_show_and_resolve_are_there(cli: CliRunner, db_url: str) -> None:
    first, second = seed_payments(db_url)
    listed = cli.invoke(app, ["payments", "list"])
    assert listed.exit_code == 0, listed.output
    header, *body = table_rows(listed.stdout)
    assert header[:4] == ["id", "state", "amount", "connector"]
    assert [row[0] for row in body] == [second, first]  # newest first, ids whole
    assert body[1][2] == "12.34 EUR"
    data = json.loads(cli.invoke(app, ["payments", "list", "--json", "--limit", "1"]).stdout)
    assert [p["id"] for p in data] == [second] and data[0]["amount"] == 990
    page = cli.invoke(app, ["payments", "list", "--json", "--limit", "1"])
    assert "more: --cursor" in page.stderr
    only = json.loads(cli.invoke(app, ["payments", "list", "--json", "--reference", "SO-0"]).stdout)
    assert [p["id"] for p in only] == [first]
    bad = cli.invoke(app, ["payments", "list", "--state", "paid"])
    assert bad.exit_code == 1 and "unknown state 'paid'" in bad.stderr
    shown = json.loads(cli.invoke(app, ["payments", "show", first, "--json"]).stdout)
    assert shown["id"] == first and shown["state"] == "created"
    assert shown["operations"][0]["kind"] == "purchase" and shown["terminal"] is None
    table = cli.invoke(app, ["payments", "show", first])
    assert table.exit_code == 0 and first in table.stdout and "12.34 EUR" in table.stdout
    missing = cli.invoke(app, ["payments", "show", "pay_nope"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    refused = cli.invoke(app, ["payments", "resolve", first, "--as", "failed", "--reason", "x"])
    assert refused.exit_code == 1 and "only unknown payments" in refused.stderr


def test_apikey_list_is_whole_when_piped_and_speaks_json(cli: CliRunner, db_url: str) -> None:
    seed_payments(db_url)
    keys = json.loads(cli.invoke(app, ["apikey", "list", "--json"]).stdout)
    (key,) = keys
    assert key["scopes"] == ["admin"] and key["revoked_at"] is None
    listed = cli.invoke(app, ["apikey", "list"])  # CliRunner's stdout is not a terminal
    assert key["id"] in listed.stdout and key["name"] in listed.stdout  # nothing cut


def test_terminals_list_speaks_json(cli: CliRunner) -> None:
    r = cli.invoke(app, ["terminals", "list", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []


def _commands(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    # Duck-typed: typer may ship its own copy of click, so isinstance(click.Group) says no.
    for name, command in group.commands.items():
        path = f"{prefix} {name}".strip()
        if hasattr(command, "commands"):
            yield from _commands(command, path)
        else:
            yield path, command


COMMANDS = dict(_commands(typer.main.get_command(app)))
assert len(COMMANDS) > 30, sorted(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_flags_are_single_and_lists_have_json(path: str) -> None:
    command = COMMANDS[path]
    options = [p for p in command.params if getattr(p, "param_type_name", "") == "option"]
    for param in options:
        if not getattr(param, "is_flag", False):
            continue
        names: list[Any] = [*param.opts, *param.secondary_opts]
        assert not any(str(n).startswith("--no-no-") for n in names), (path, names)
        if param.default is False:
            # "--keep --no-keep" says nothing the first does not; typer doubles every bool.
            assert not param.secondary_opts, f"{path}: {names} for a flag that is off by default"
    if path.split()[-1] in ("list", "deliveries", "subscribers", "types"):
        assert "--json" in {o for p in options for o in p.opts}, path
