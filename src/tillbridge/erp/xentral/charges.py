"""The semantic idempotency key of a Xentral POS card payment: the money it asks for.

Xentral's envelope has no event id and its ``guid`` may be null (the documented schema says
"string or null"). The inbox deduplicates identical bytes only, so a re-sent event with other
bytes (other JSON separators, a new ``createdAt``, another key order) is a new inbox row. What
makes it the same request is the money it asks for:

    register  /  operation  /  document type : document number  /  amount currency

for example ``berlin-1/purchase/invoice:40009001/1234 EUR``. The register stands for the
project (an event may name it by ``project.id`` or by ``project.number``; both resolve to the
register), the operation is ``purchase`` or ``refund``, the amount is what the terminal is asked
to take (``totalAmount + tip``, in minor units).

Rule (:func:`find_duplicate`): a second request for the same money is a duplicate, whatever its
bytes or ``guid``, while the earlier payment may still move or has moved money. Once the earlier
payment has ended without moving money (declined, canceled, failed, expired, voided), the key
is released: the cashier's next try at the register is a new intent and is charged. Release and
claim happen in the processing transaction, and the unique index ``(account, charge_key)`` makes
two concurrent jobs for the same money end with one payment (the loser's transaction rolls back
and its retry finds the winner).

A consequence to know: two card payments of exactly the same amount for the same document at
the same register (an invoice split evenly over two cards) are one intent to the bridge; the
second is settled ``duplicate`` and names the first. Take the second card with the terminal API
(``POST /v1/terminals/{id}/payments``), or split the amounts unevenly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.domain.states import PaymentState
from tillbridge.erp.xentral.mapping import PaymentKind, XentralCardPayment
from tillbridge.erp.xentral.tables import xentral_pos_payments as links
from tillbridge.store.tables import payments

#: A payment in one of these states moved no money and never will: its key is free again.
RELEASING_STATES: Final = frozenset(
    {
        PaymentState.DECLINED,
        PaymentState.CANCELED,
        PaymentState.FAILED,
        PaymentState.EXPIRED,
        PaymentState.VOIDED,
    }
)


def operation_of(event: XentralCardPayment) -> str:
    """``purchase`` or ``refund``: what the event asks the terminal to do."""
    return "refund" if event.kind is PaymentKind.REFUND else "purchase"


def charge_key(register: str, event: XentralCardPayment) -> str:
    """The semantic key of ``event`` at ``register`` (see the module docstring)."""
    money = event.charge
    return (
        f"{register}/{operation_of(event)}/{event.payment_reference}/{money.minor} {money.currency}"
    )


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The earlier payment that already asks for the same money."""

    payment_id: str
    state: str
    key: str

    @property
    def reason(self) -> str:
        return f"same money as payment {self.payment_id} ({self.state}): {self.key}"


async def find_duplicate(conn: AsyncConnection, account: str, key: str) -> Duplicate | None:
    """The earlier payment for ``key`` that still holds it, or None.

    An earlier payment that ended without moving money releases the key here (its link keeps
    every other column, for the record), so the caller may claim it with the new link.
    """
    row = (
        await conn.execute(
            select(links.c.id, links.c.payment_id, payments.c.state)
            .join(payments, payments.c.id == links.c.payment_id)
            .where(links.c.account == account, links.c.charge_key == key)
        )
    ).first()
    if row is None:
        return None
    if PaymentState(row.state) in RELEASING_STATES:
        await conn.execute(update(links).where(links.c.id == row.id).values(charge_key=None))
        return None
    return Duplicate(str(row.payment_id), str(row.state), key)
