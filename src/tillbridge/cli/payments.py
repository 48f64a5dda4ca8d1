"""``tillbridge payments resolve``: operator decisions on payments.

``resolve`` settles a payment stuck in ``unknown`` once the operator has checked the terminal's
or provider's own records; the decision, its reason and who took it go to the audit log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from tillbridge.cli.common import handle_errors, out, with_runtime

if TYPE_CHECKING:
    from tillbridge.app.runtime import Runtime

payments_app = typer.Typer(help="Operator actions on payments.", no_args_is_help=True)


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
