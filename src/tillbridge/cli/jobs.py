"""``tillbridge jobs ...``: operator commands on durable jobs.

Commands: ``list`` (filters ``--status``, ``--kind``, ``--key``; ``--limit``/``--cursor`` to
page), ``show ID``, ``retry ID`` (dead or cancelled -> todo now), ``cancel ID`` (todo or failed ->
cancelled; a running job is refused). ``list`` prints a table (whole cells, also when piped) or
JSON with ``--json``; ``show`` a table on a terminal, ``name<TAB>value`` lines otherwise. The
database is ``load_settings().database_url``.

Exit codes: 0 done; 1 unexpected error; 2 bad usage, filter or cursor; 3 no such job; 4 the job's
status does not allow the operation; 5 the database is unavailable.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tillbridge.cli.common import print_more, print_table
from tillbridge.errors import BridgeError, JobNotFound, JobStateError, StoreError, ValidationError
from tillbridge.queue import JobDetail, JobPage, cancel_job, get_job, list_jobs, retry_job
from tillbridge.settings import load_settings
from tillbridge.store.db import Database
from tillbridge.store.types import MAX_ROW_ID

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_UNAVAILABLE = 5

#: A job id: 1 to the largest BIGINT (a larger one is a usage error, not a driver overflow).
JobId = Annotated[int, typer.Argument(metavar="ID", min=1, max=MAX_ROW_ID)]

jobs_app = typer.Typer(name="jobs", help="Inspect and act on durable jobs.", no_args_is_help=True)

_T = TypeVar("_T")


def _fail(message: str, code: int) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _call(work: Callable[[Database], Awaitable[_T]]) -> _T:
    """Run one operator function against the configured database; map errors to exit codes."""

    async def main() -> _T:
        db = Database(load_settings().database_url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except JobNotFound as exc:
        _fail(exc.message, EXIT_NOT_FOUND)
    except JobStateError as exc:
        _fail(exc.message, EXIT_REFUSED)
    except StoreError as exc:
        _fail(f"{exc.message} ({exc.details.get('detail', '')})", EXIT_UNAVAILABLE)
    except ValidationError as exc:  # a cursor that is not one of ours
        _fail(exc.message, EXIT_USAGE)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    except BridgeError as exc:
        _fail(exc.message, EXIT_ERROR)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _error_line(err: dict[str, Any] | None) -> str:
    if not err:
        return "-"
    line = f"{err.get('type', '?')}: {err.get('message', '')}".splitlines()[0]
    return line[:80]


_LIST_COLUMNS = ("id", "status", "kind", "key", "attempts", "run_after", "last_error")


def _print_page(page: JobPage) -> None:
    rows = [
        (
            str(j.id),
            j.status,
            j.kind,
            _fmt(j.key),
            f"{j.attempts}/{_fmt(j.max_attempts)}",
            _fmt(j.run_after),
            _error_line(j.last_error),
        )
        for j in page.items
    ]
    # One table whether on a terminal or piped (nothing is cut), as every listing prints;
    # scripts take --json.
    print_table(_LIST_COLUMNS, rows, whole=("id", "kind", "key"))
    print_more(page.next_cursor, as_json=False)


def _print_detail(job: JobDetail) -> None:
    fields = [
        ("id", job.id),
        ("status", job.status),
        ("kind", job.kind),
        ("queue", job.queue),
        ("key", job.key),
        ("attempts", f"{job.attempts}/{_fmt(job.max_attempts)}"),
        ("run_after", job.run_after),
        ("locked_by", job.locked_by),
        ("locked_until", job.locked_until),
        ("dedupe_key", job.dedupe_key),
        ("created_at", job.created_at),
        ("updated_at", job.updated_at),
        ("started_at", job.started_at),
        ("finished_at", job.finished_at),
    ]
    payload = json.dumps(job.payload, indent=2, sort_keys=True)
    if sys.stdout.isatty():
        console = Console()
        table = Table(show_header=False, box=None)
        for name, value in fields:
            table.add_row(f"[bold]{name}[/]", _fmt(value))
        console.print(table)
        console.print("[bold]payload[/]")
        console.print(payload, highlight=False, markup=False)
        for e in job.errors:
            console.print(
                f"[bold]error[/] attempt {e.attempt} at {_fmt(e.at)}: {e.type}: {e.message}",
                highlight=False,
            )
            if e.traceback:
                console.print(e.traceback.rstrip(), highlight=False, markup=False)
        return
    for name, value in fields:
        print(f"{name}\t{_fmt(value)}")
    print("payload\t" + json.dumps(job.payload, sort_keys=True))
    for e in job.errors:
        first_line = e.message.splitlines()[0] if e.message else ""
        print(f"error\t{e.attempt}\t{_fmt(e.at)}\t{e.type}\t{first_line}")


@jobs_app.command("list")
def list_command(
    status: Annotated[
        str | None, typer.Option(help="todo, running, succeeded, failed, dead or cancelled")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only this job kind.")] = None,
    key: Annotated[str | None, typer.Option(help="Only jobs of this serialization key.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Jobs per page.")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="Page: the cursor printed after the previous page.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List jobs, newest first."""
    page = _call(
        lambda db: list_jobs(db, status=status, kind=kind, key=key, cursor=cursor, limit=limit)
    )
    if as_json:
        data = {"items": [asdict(j) for j in page.items], "next_cursor": page.next_cursor}
        print(json.dumps(data, default=_jsonable, sort_keys=True))
    else:
        _print_page(page)


@jobs_app.command("show")
def show_command(
    job_id: JobId,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Show one job: payload, attempts, errors, timestamps."""
    job = _call(lambda db: get_job(db, job_id))
    if as_json:
        print(json.dumps(asdict(job), default=_jsonable, sort_keys=True))
    else:
        _print_detail(job)


@jobs_app.command("retry")
def retry_command(job_id: JobId) -> None:
    """Run a dead or cancelled job again, now, with fresh attempts."""
    _call(lambda db: retry_job(db, job_id))
    print(f"job {job_id} queued again")


@jobs_app.command("cancel")
def cancel_command(job_id: JobId) -> None:
    """Cancel a job that has not run yet or is waiting for a retry."""
    _call(lambda db: cancel_job(db, job_id))
    print(f"job {job_id} cancelled")
