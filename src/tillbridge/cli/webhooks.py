"""``tillbridge webhooks ...``: the inbox (incoming) and the delivery log (outgoing).

Incoming: ``list`` (``--status``, ``--source``, ``--account``, ``--limit``, ``--cursor``),
``show ID``, ``replay ID``. Outgoing: ``deliveries`` (``--status``, ``--subscriber``, ``--limit``,
``--cursor``), ``delivery ID`` (with every attempt), ``redeliver ID``, ``subscribers``,
``enable NAME``. Tables on a terminal, JSON with ``--json`` (a listing prints its rows; the
cursor of the next page follows as ``more: --cursor ...``, on stderr with ``--json``).

Exit codes (as ``tillbridge jobs``): 0 done; 1 unexpected error; 2 bad usage or cursor; 3 not
found; 4 refused in the current state (already queued, subscriber disabled); 5 database
unavailable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from tillbridge.cli.common import print_json, print_more, print_table
from tillbridge.errors import BridgeError, NotFound, QueueError, StoreError, ValidationError
from tillbridge.inbound import admin as inbox_admin
from tillbridge.store.keyset import Page
from tillbridge.store.types import MAX_ROW_ID
from tillbridge.webhooks_out import admin as out_admin

webhooks_app = typer.Typer(
    name="webhooks", help="Incoming webhook inbox and outgoing deliveries.", no_args_is_help=True
)

_T = TypeVar("_T")
_out = Console(soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
Limit = Annotated[int, typer.Option(min=1, max=500, help="rows per page")]
#: An inbox entry or delivery id: 1 to the largest BIGINT.
RowId = Annotated[int, typer.Argument(metavar="ID", min=1, max=MAX_ROW_ID)]
Cursor = Annotated[
    str | None, typer.Option("--cursor", help="next page: the cursor printed after the last one")
]


def _fail(message: str, code: int) -> NoReturn:
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _call(work: Callable[[Any], Awaitable[_T]]) -> _T:
    """Run ``work(runtime)`` against the configured bridge; map errors to exit codes."""
    from tillbridge.app.runtime import build_runtime
    from tillbridge.settings import load_settings

    async def main() -> _T:
        rt = build_runtime(load_settings())
        try:
            return await work(rt)
        finally:
            await rt.close()

    try:
        return asyncio.run(main())
    except NotFound as exc:
        _fail(exc.message, 3)
    except QueueError as exc:
        _fail(exc.message, 4)
    except StoreError as exc:
        _fail(f"{exc.message} ({exc.details.get('detail', '')})", 5)
    except ValidationError as exc:
        _fail(exc.message, 2)
    except BridgeError as exc:
        _fail(exc.message, 1)


_print_json = print_json


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    print_table(columns, ([r.get(c) for c in columns] for r in rows))


def _print_page(page: Page[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    """The rows (a JSON list with ``--json``), then the next page's cursor if there is one."""
    if as_json:
        print_json(page.items)
    else:
        _table(page.items, columns)
    print_more(page.next_cursor, as_json=as_json)


# incoming ------------------------------------------------------------------------------------


@webhooks_app.command("list")
def list_cmd(
    status: Annotated[str | None, typer.Option(help="queued, processed, dead, ...")] = None,
    source: Annotated[str | None, typer.Option(help="e.g. xentral")] = None,
    account: Annotated[str | None, typer.Option(help="the erp entry name")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    as_json: JsonOpt = False,
) -> None:
    """List received webhooks, newest first."""
    page = _call(
        lambda rt: inbox_admin.list_inbox(
            rt.db, status=status, source=source, account=account, cursor=cursor, limit=limit
        )
    )
    columns = ["id", "source", "account", "event_type", "status", "attempts", "received_at"]
    _print_page(page, [*columns, "error"], as_json)


@webhooks_app.command("show")
def show_cmd(inbox_id: RowId, as_json: JsonOpt = False) -> None:
    """Show one received webhook: body, headers, verification, result, processing job."""
    item = _call(lambda rt: inbox_admin.show_inbox(rt.db, inbox_id, rt.redactor))
    if as_json:
        _print_json(item)
        return
    for key in ("id", "source", "account", "status", "event_type", "event_id", "received_at"):
        _out.print(f"[bold]{key}:[/] {item[key]}", highlight=False)
    _out.print(f"[bold]from:[/] {item['remote_addr']}  verification: {item['verification']}")
    _out.print(f"[bold]result:[/] {item['result']}", highlight=False)
    if item["error"]:
        _out.print(f"[bold red]error:[/] {item['error']}", highlight=False)
    job = item["job"]
    if job is not None:
        _out.print(f"[bold]job:[/] {job['id']} {job['status']} (attempts {job['attempts']})")
        for e in job["errors"]:
            _out.print(f"  attempt {e['attempt']} {e['at']}: {e['type']}: {e['message']}")
    _out.print("[bold]body:[/]")
    _out.print(item["body"], markup=False, highlight=False)


@webhooks_app.command("replay")
def replay_cmd(inbox_id: RowId) -> None:
    """Process a stored webhook again (creates nothing twice; for dead or invalid ones)."""
    job_id = _call(lambda rt: inbox_admin.replay(rt.db, inbox_id))
    _out.print(f"inbox entry {inbox_id} queued again (job {job_id})")


# outgoing ------------------------------------------------------------------------------------


@webhooks_app.command("deliveries")
def deliveries_cmd(
    status: Annotated[str | None, typer.Option(help="pending, retrying, succeeded, ...")] = None,
    subscriber: Annotated[str | None, typer.Option(help="subscriber name")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    as_json: JsonOpt = False,
) -> None:
    """List outgoing deliveries, newest first."""
    page = _call(
        lambda rt: out_admin.list_deliveries(
            rt.db, status=status, subscriber=subscriber, cursor=cursor, limit=limit
        )
    )
    cols = ["id", "event_type", "subscriber", "status", "attempts", "last_status_code"]
    _print_page(page, [*cols, "next_attempt_at", "last_error"], as_json)


@webhooks_app.command("delivery")
def delivery_cmd(delivery_id: RowId, as_json: JsonOpt = False) -> None:
    """Show one delivery with every attempt (status, duration, error)."""
    d = _call(lambda rt: out_admin.get_delivery(rt.db, delivery_id))
    if as_json:
        _print_json(d)
        return
    _out.print(
        f"[bold]delivery {d['id']}[/] {d['event_type']} -> {d['subscriber']}: {d['status']} "
        f"(webhook-id {d['event_id']})",
        highlight=False,
    )
    _table(d["attempt_log"], ["attempt", "at", "outcome", "status_code", "duration_ms", "error"])


@webhooks_app.command("redeliver")
def redeliver_cmd(delivery_id: RowId) -> None:
    """Send a delivery again (same webhook-id; the retry schedule starts over)."""
    job_id = _call(lambda rt: out_admin.redeliver(rt.db, delivery_id))
    _out.print(f"delivery {delivery_id} queued again (job {job_id})")


@webhooks_app.command("subscribers")
def subscribers_cmd(as_json: JsonOpt = False) -> None:
    """List subscribers and whether they are enabled (a 410 answer disables one)."""
    views = _call(lambda rt: out_admin.list_subscribers(rt.db, rt.integrations.subscriptions))
    rows = [v.as_dict() for v in views]
    if as_json:
        _print_json(rows)
        return
    _table(rows, ["name", "url", "events", "enabled", "disabled_at", "disabled_reason"])


@webhooks_app.command("enable")
def enable_cmd(name: str) -> None:
    """Enable a subscriber again after it was disabled."""
    _call(lambda rt: out_admin.enable_subscriber(rt.db, rt.integrations.subscriptions, name))
    _out.print(f"subscriber {name} enabled")
