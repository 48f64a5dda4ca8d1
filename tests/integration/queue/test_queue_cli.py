"""``tillbridge jobs`` commands against a real database, as an operator runs them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from support.cli import table_rows
from tillbridge.cli.jobs import (
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    jobs_app,
)
from tillbridge.queue import enqueue
from tillbridge.store.db import Database


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("TILLBRIDGE_DATABASE_URL", db_url)
    yield CliRunner()


def seed(url: str) -> list[int]:
    async def run() -> list[int]:
        db = Database(url)
        try:
            async with db.write() as conn:
                return [
                    await enqueue(conn, "erp.post", {"payment": "p1"}, key="order:1"),
                    await enqueue(conn, "erp.post", {"payment": "p2"}, key="order:2"),
                    await enqueue(conn, "audit.purge"),
                ]
        finally:
            await db.dispose()

    return asyncio.run(run())


def test_list_prints_a_table_also_when_not_a_tty(cli: CliRunner, db_url: str) -> None:
    """One table on a terminal and piped, like every other listing (issue 13.16)."""
    ids = seed(db_url)
    result = cli.invoke(jobs_app, ["list"])
    assert result.exit_code == 0, result.output
    header, *body = table_rows(result.stdout)
    assert header == ["id", "status", "kind", "key", "attempts", "run_after", "last_error"]
    assert [row[0] for row in body] == [str(i) for i in reversed(ids)]

    result = cli.invoke(jobs_app, ["list", "--kind", "erp.post", "--key", "order:2"])
    assert [row[:4] for row in table_rows(result.stdout)[1:]] == [
        [str(ids[1]), "todo", "erp.post", "order:2"]
    ]


def test_list_pages_and_speaks_json(cli: CliRunner, db_url: str) -> None:
    ids = seed(db_url)
    first = json.loads(cli.invoke(jobs_app, ["list", "--json", "--limit", "2"]).stdout)
    assert [j["id"] for j in first["items"]] == [ids[2], ids[1]]
    cursor = str(first["next_cursor"])
    rest = json.loads(cli.invoke(jobs_app, ["list", "--json", "--cursor", cursor]).stdout)
    assert [j["id"] for j in rest["items"]] == [ids[0]] and rest["next_cursor"] is None


def test_show_prints_payload_and_timestamps(cli: CliRunner, db_url: str) -> None:
    ids = seed(db_url)
    result = cli.invoke(jobs_app, ["show", str(ids[0])])
    assert result.exit_code == 0, result.output
    fields = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    assert fields["status"] == "todo" and fields["key"] == "order:1"
    assert json.loads(fields["payload"]) == {"payment": "p1"}
    assert fields["created_at"] != "-"
    data = json.loads(cli.invoke(jobs_app, ["show", str(ids[0]), "--json"]).stdout)
    assert data["payload"] == {"payment": "p1"} and data["errors"] == []


def test_cancel_then_retry_with_clear_refusals(cli: CliRunner, db_url: str) -> None:
    ids = seed(db_url)
    assert cli.invoke(jobs_app, ["cancel", str(ids[0])]).exit_code == 0
    again = cli.invoke(jobs_app, ["cancel", str(ids[0])])
    assert again.exit_code == EXIT_REFUSED
    assert "is cancelled; only todo or failed jobs can be cancelled" in again.stderr
    refused = cli.invoke(jobs_app, ["retry", str(ids[1])])
    assert refused.exit_code == EXIT_REFUSED and "only dead or cancelled" in refused.stderr
    ok = cli.invoke(jobs_app, ["retry", str(ids[0])])
    assert ok.exit_code == 0 and f"job {ids[0]} queued again" in ok.stdout


def test_unknown_job_bad_filter_and_unreachable_database(
    cli: CliRunner, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = cli.invoke(jobs_app, ["show", "424242"])
    assert missing.exit_code == EXIT_NOT_FOUND and "job 424242 not found" in missing.stderr
    assert cli.invoke(jobs_app, ["retry", "424242"]).exit_code == EXIT_NOT_FOUND
    bad = cli.invoke(jobs_app, ["list", "--status", "done"])
    assert bad.exit_code == EXIT_USAGE and "unknown status 'done'" in bad.stderr
    assert cli.invoke(jobs_app, ["show", "not-a-number"]).exit_code == EXIT_USAGE

    monkeypatch.setenv("TILLBRIDGE_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    down = cli.invoke(jobs_app, ["list"])
    assert down.exit_code == EXIT_UNAVAILABLE, down.output
    assert "not reachable" in down.stderr


def test_a_bad_cursor_is_a_one_line_usage_error(cli: CliRunner, db_url: str) -> None:
    seed(db_url)
    for cursor in ("not-a-cursor", "WzkyMjMzNzIwMzY4NTQ3NzU4MDhd"):  # the second: [2**63]
        bad = cli.invoke(jobs_app, ["list", "--cursor", cursor])
        assert bad.exit_code == EXIT_USAGE, bad.output
        assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
        assert "cursor" in bad.stderr and "Traceback" not in bad.output


@pytest.mark.parametrize("command", ["show", "retry", "cancel"])
def test_an_id_beyond_a_bigint_is_a_usage_error(cli: CliRunner, command: str) -> None:
    result = cli.invoke(jobs_app, [command, str(2**63)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "9223372036854775807" in result.output  # the range it takes
