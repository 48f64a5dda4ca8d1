"""``tillbridge payments list|show|resolve``: see every payment and settle the stuck ones.

* ``list`` pages newest first, with the API's filters (``--reference``, ``--state``,
  ``--limit``, ``--cursor``): a table, or ``--json`` (the payments as the API shows them; the
  next page's cursor goes to stderr as ``more: --cursor ...``).
* ``show ID`` is one payment in full: its state and amounts, its operations (what was sent,
  the identifier the counterpart echoes, the outcome), its refunds and, for a card-terminal
  payment, the terminal side (masked card number, trace and receipt numbers, whether an
  operator must decide). ``--json`` prints the same as one object.
* ``resolve`` settles a payment stuck in ``unknown`` once the operator has checked the
  terminal's or provider's own records; the decision, its reason and who took it go to the
  audit log.

They read the database and configuration ``serve`` uses; none of them talks to a counterpart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tillbridge.cli.common import (
    handle_errors,
    out,
    print_json,
    print_more,
    print_table,
    with_runtime,
)

if TYPE_CHECKING:
    from tillbridge.app.runtime import Runtime

payments_app = typer.Typer(
    help="Payments: list, show, and settle the unknown ones.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
_LIST_COLUMNS = ("id", "state", "amount", "connector", "reference", "created_at", "failure_reason")


def _amount(p: dict[str, Any]) -> str:
    from tillbridge.money import Money

    money = Money(int(p["amount"]), str(p["currency"]))
    return f"{money.to_decimal()} {money.currency}"


@payments_app.command("list")
@handle_errors
def payments_list(
    reference: Annotated[str | None, typer.Option(help="only this merchant reference")] = None,
    state: Annotated[
        str | None, typer.Option(help="created, in_progress, captured, declined, unknown, ...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="payments per page")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="next page: the cursor printed after the last one")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List payments, newest first."""
    from tillbridge.domain.states import PaymentState
    from tillbridge.domain.views import payment_dict
    from tillbridge.errors import ValidationError
    from tillbridge.store import payments_repo
    from tillbridge.store.payments_repo import PaymentFilter

    try:
        wanted = PaymentState(state) if state is not None else None
    except ValueError:
        known = ", ".join(s.value for s in PaymentState)
        raise ValidationError(f"unknown state {state!r}; one of {known}") from None

    async def go(rt: Runtime) -> tuple[list[dict[str, Any]], str | None]:
        async with rt.db.read() as conn:
            page, next_cursor = await payments_repo.list_payments(
                conn, PaymentFilter(reference=reference, state=wanted), limit=limit, cursor=cursor
            )
        return [payment_dict(p) for p in page], next_cursor

    rows, next_cursor = with_runtime(go)
    if as_json:
        print_json(rows)
    elif not rows:
        out.print("no payments" + (" match" if reference or state else " yet"), markup=False)
    else:
        print_table(
            _LIST_COLUMNS,
            ([_amount(p) if c == "amount" else p[c] for c in _LIST_COLUMNS] for p in rows),
            whole=("id", "state", "amount"),
        )
    print_more(next_cursor, as_json=as_json)


@payments_app.command("show")
@handle_errors
def payments_show(
    payment_id: Annotated[str, typer.Argument(metavar="ID", help="the payment id (pay_...)")],
    as_json: JsonOpt = False,
) -> None:
    """One payment in full: operations, refunds, and the terminal side of a card payment."""
    from tillbridge.domain.views import iso_utc, payment_dict
    from tillbridge.errors import NotFound
    from tillbridge.store import payments_repo

    async def go(rt: Runtime) -> dict[str, Any]:
        async with rt.db.read() as conn:
            p = await payments_repo.get_payment(conn, payment_id)
            ops = await payments_repo.list_operations(conn, p.id)
            refunds = await payments_repo.list_refunds(conn, p.id)
        try:
            terminal: dict[str, Any] | None = (await rt.terminals.payment_side(p.id)).to_dict()
        except NotFound:
            terminal = None  # an online payment, or one that never ran on a terminal
        return {
            **payment_dict(p),
            "operations": [
                {
                    "id": op.id,
                    "kind": str(op.kind),
                    "amount": op.amount.minor,
                    "echo_id": op.echo_id,
                    "outcome": str(op.outcome) if op.outcome else None,
                    "sent_at": iso_utc(op.sent_at) if op.sent_at else None,
                    "recovery_attempts": op.recovery_attempts,
                    "created_at": iso_utc(op.created_at),
                }
                for op in ops
            ],
            "refunds": [
                {
                    "id": r.id,
                    "amount": r.amount.minor,
                    "outcome": str(r.outcome) if r.outcome else "pending",
                    "reason": r.reason,
                    "created_at": iso_utc(r.created_at),
                }
                for r in refunds
            ],
            "terminal": terminal,
        }

    shown = with_runtime(go)
    if as_json:
        print_json(shown)
        return
    _print_detail(shown)


def _print_detail(p: dict[str, Any]) -> None:
    fields = [
        ("id", p["id"]),
        ("state", p["state"]),
        ("amount", _amount(p)),
        ("captured", p["captured_amount"]),
        ("refunded", p["refunded_amount"]),
        ("connector", p["connector"]),
        ("reference", p["reference"]),
        ("failure", p["failure_reason"]),
        ("created_at", p["created_at"]),
        ("updated_at", p["updated_at"]),
        ("metadata", p["metadata"] or None),
    ]
    print_table(("field", "value"), fields, whole=("field",))
    if p["operations"]:
        op_columns = ("id", "kind", "amount", "echo_id", "outcome", "sent_at", "recovery_attempts")
        print_table(op_columns, ([op[c] for c in op_columns] for op in p["operations"]))
    if p["refunds"]:
        refund_columns = ("id", "amount", "outcome", "reason", "created_at")
        print_table(refund_columns, ([r[c] for c in refund_columns] for r in p["refunds"]))
    terminal = p["terminal"]
    if terminal:
        wanted = (
            "terminal", "kind", "outcome", "trace_number", "receipt_number", "result_code",
            "result_text", "masked_pan", "card_name", "auth_code", "terminal_tid",
            "needs_operator", "detail",
        )  # fmt: skip
        rows = [(k, terminal[k]) for k in wanted if terminal.get(k) not in (None, {}, [])]
        if rows:
            print_table(("terminal side", "value"), rows, whole=("terminal side",))


@payments_app.command("resolve")
@handle_errors
def payments_resolve(
    payment_id: str,
    as_: Annotated[str, typer.Option("--as", help="succeeded or failed")],
    reason: Annotated[str, typer.Option(help="why; goes to the audit log")],
    operator: Annotated[str, typer.Option(help="who decides")] = "cli",
) -> None:
    """Settle a payment stuck in `unknown` after checking the terminal or provider yourself."""

    async def go(rt: Runtime) -> str:
        p = await rt.payments.resolve(
            payment_id, outcome=as_, reason=reason, actor=f"operator:{operator}"
        )
        return str(p.state)

    out.print(f"{payment_id} is now {with_runtime(go)}")
