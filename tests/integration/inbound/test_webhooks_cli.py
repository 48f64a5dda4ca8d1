"""``tillbridge webhooks list|deliveries`` paging against a real database, as operators run it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tillbridge.cli.webhooks import webhooks_app
from tillbridge.inbound import inbox
from tillbridge.store.db import Database

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    config = tmp_path / "tillbridge.toml"
    config.write_text("")  # nothing configured: the inbox is still there to look at
    monkeypatch.setenv("TILLBRIDGE_DATABASE_URL", db_url)
    monkeypatch.setenv("TILLBRIDGE_CONFIG", str(config))
    yield CliRunner()


def seed(url: str, n: int) -> list[int]:
    async def run() -> list[int]:
        db = Database(url)
        try:
            async with db.write() as conn:
                batch = [
                    inbox.NewDelivery(
                        source="xentral",
                        account="xpos",
                        dedupe_key=f"evt-{i}",
                        event_id=f"evt-{i}",
                        raw_body=b"{}",
                        headers={},
                        verification={"scheme": "test"},
                        remote_addr=None,
                        received_at=NOW,
                    )
                    for i in range(n)
                ]
                return [inbox_id for inbox_id, _ in await inbox.store_many(conn, batch)]
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_list_pages_with_cursor_and_prints_the_next_one(cli: CliRunner, db_url: str) -> None:
    ids = seed(db_url, 3)
    first = cli.invoke(webhooks_app, ["list", "--json", "--limit", "2"])
    assert first.exit_code == 0, first.output
    assert [i["id"] for i in json.loads(first.stdout)] == [ids[2], ids[1]]
    hint = re.fullmatch(r"more: --cursor (\S+)\n", first.stderr)  # stdout stays one JSON list
    assert hint is not None, first.stderr
    rest = cli.invoke(webhooks_app, ["list", "--json", "--limit", "2", "--cursor", hint[1]])
    assert [i["id"] for i in json.loads(rest.stdout)] == [ids[0]]
    assert rest.stderr == ""  # the last page: no hint

    table = cli.invoke(webhooks_app, ["list", "--limit", "2"])
    assert table.exit_code == 0 and f"more: --cursor {hint[1]}" in table.stdout


@pytest.mark.parametrize("command", ["list", "deliveries"])
def test_a_bad_cursor_is_a_one_line_usage_error(cli: CliRunner, command: str) -> None:
    bad = cli.invoke(webhooks_app, [command, "--cursor", "not-a-cursor"])
    assert bad.exit_code == 2, bad.output
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
    assert "cursor" in bad.stderr and "Traceback" not in bad.output


def test_deliveries_without_any_is_an_empty_page(cli: CliRunner) -> None:
    result = cli.invoke(webhooks_app, ["deliveries", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == [] and result.stderr == ""


@pytest.mark.parametrize("command", ["show", "replay", "delivery", "redeliver"])
def test_an_id_beyond_a_bigint_is_a_usage_error(cli: CliRunner, command: str) -> None:
    result = cli.invoke(webhooks_app, [command, str(2**63)])
    assert result.exit_code == 2 and "Traceback" not in result.output
