"""Loading and saving the payment aggregate, with optimistic concurrency.

Every function takes the caller's :class:`AsyncConnection`, so a state change, its audit entry
and the jobs it causes commit in one transaction. :func:`save_payment` updates only if the row
still has the version that was loaded; otherwise it raises
:class:`~tillbridge.errors.ConcurrentUpdate` and the caller reloads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.domain.payments import Operation, Payment, Refund
from tillbridge.domain.states import OperationKind, Outcome, PaymentState
from tillbridge.errors import ConcurrentUpdate, NotFound
from tillbridge.money import Money
from tillbridge.store.keyset import Keyset, Page
from tillbridge.store.tables import operations, payments, refunds


def _payment_from_row(r: RowMapping) -> Payment:
    return Payment(
        id=r["id"],
        amount=Money(r["amount_minor"], r["currency"]),
        reference=r["reference"],
        connector=r["connector"],
        state=PaymentState(r["state"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        metadata=dict(r["metadata"] or {}),
        captured_minor=r["captured_minor"],
        refunded_minor=r["refunded_minor"],
        pending_refund_minor=r["pending_refund_minor"],
        failure_reason=r["failure_reason"],
        version=r["version"],
    )


def _operation_from_row(r: RowMapping) -> Operation:
    return Operation(
        id=r["id"],
        payment_id=r["payment_id"],
        kind=OperationKind(r["kind"]),
        amount=Money(r["amount_minor"], r["currency"]),
        echo_id=r["echo_id"],
        idempotency_key=r["idempotency_key"],
        outcome=Outcome(r["outcome"]) if r["outcome"] else None,
        detail=dict(r["detail"] or {}),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        sent_at=r["sent_at"],
        recovery_attempts=r["recovery_attempts"] or 0,
    )


def _refund_from_row(r: RowMapping) -> Refund:
    return Refund(
        id=r["id"],
        payment_id=r["payment_id"],
        amount=Money(r["amount_minor"], r["currency"]),
        operation_id=r["operation_id"],
        created_at=r["created_at"],
        outcome=Outcome(r["outcome"]) if r["outcome"] else None,
        reason=r["reason"],
    )


def _payment_values(p: Payment) -> dict[str, Any]:
    return {
        "amount_minor": p.amount.minor,
        "currency": p.currency,
        "reference": p.reference,
        "connector": p.connector,
        "state": str(p.state),
        "captured_minor": p.captured_minor,
        "refunded_minor": p.refunded_minor,
        "pending_refund_minor": p.pending_refund_minor,
        "failure_reason": p.failure_reason,
        "metadata": p.metadata,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


# Statements are built once and executed with parameter dicts: building ``.values(...)`` per
# call costs more CPU than the SQLite statement itself (see docs/benchmarks.md).
_INSERT_PAYMENT = insert(payments)
_SAVE_PAYMENT = update(payments).where(
    payments.c.id == bindparam("b_id"), payments.c.version == bindparam("b_version")
)
_INSERT_OPERATION = insert(operations)
_SAVE_OPERATION = update(operations).where(operations.c.id == bindparam("b_id"))
_INSERT_REFUND = insert(refunds)
_SAVE_REFUND = update(refunds).where(refunds.c.id == bindparam("b_id"))


async def insert_payment(conn: AsyncConnection, p: Payment) -> None:
    await conn.execute(_INSERT_PAYMENT, {"id": p.id, "version": p.version, **_payment_values(p)})


async def save_payment(conn: AsyncConnection, p: Payment) -> None:
    """Write the aggregate back if nobody changed it since it was loaded; bumps ``version``."""
    res = await conn.execute(
        _SAVE_PAYMENT,
        {"b_id": p.id, "b_version": p.version, "version": p.version + 1, **_payment_values(p)},
    )
    if res.rowcount != 1:
        raise ConcurrentUpdate(f"payment {p.id} was changed concurrently", payment_id=p.id)
    p.version += 1


async def get_payment(conn: AsyncConnection, payment_id: str) -> Payment:
    row = (await conn.execute(select(payments).where(payments.c.id == payment_id))).mappings()
    r = row.first()
    if r is None:
        raise NotFound(f"payment {payment_id} not found", payment_id=payment_id)
    return _payment_from_row(r)


async def insert_operation(conn: AsyncConnection, op: Operation) -> None:
    await conn.execute(
        _INSERT_OPERATION,
        {
            "id": op.id,
            "payment_id": op.payment_id,
            "kind": str(op.kind),
            "amount_minor": op.amount.minor,
            "currency": op.amount.currency,
            "echo_id": op.echo_id,
            "idempotency_key": op.idempotency_key,
            "outcome": str(op.outcome) if op.outcome else None,
            "detail": op.detail,
            "sent_at": op.sent_at,
            "recovery_attempts": op.recovery_attempts,
            "created_at": op.created_at,
            "updated_at": op.updated_at,
        },
    )


async def save_operation(conn: AsyncConnection, op: Operation) -> None:
    await conn.execute(
        _SAVE_OPERATION,
        {
            "b_id": op.id,
            "outcome": str(op.outcome) if op.outcome else None,
            "detail": op.detail,
            "sent_at": op.sent_at,
            "recovery_attempts": op.recovery_attempts,
            "updated_at": op.updated_at,
        },
    )


async def get_operation(conn: AsyncConnection, operation_id: str) -> Operation:
    r = (
        (await conn.execute(select(operations).where(operations.c.id == operation_id)))
        .mappings()
        .first()
    )
    if r is None:
        raise NotFound(f"operation {operation_id} not found")
    return _operation_from_row(r)


async def list_operations(conn: AsyncConnection, payment_id: str) -> list[Operation]:
    rows = await conn.execute(
        select(operations)
        .where(operations.c.payment_id == payment_id)
        .order_by(operations.c.created_at, operations.c.id)
    )
    return [_operation_from_row(r) for r in rows.mappings()]


async def insert_refund(conn: AsyncConnection, r: Refund) -> None:
    await conn.execute(
        _INSERT_REFUND,
        {
            "id": r.id,
            "payment_id": r.payment_id,
            "operation_id": r.operation_id,
            "amount_minor": r.amount.minor,
            "currency": r.amount.currency,
            "outcome": str(r.outcome) if r.outcome else None,
            "reason": r.reason,
            "created_at": r.created_at,
        },
    )


async def save_refund(conn: AsyncConnection, r: Refund) -> None:
    await conn.execute(
        _SAVE_REFUND, {"b_id": r.id, "outcome": str(r.outcome) if r.outcome else None}
    )


async def get_refund_of(conn: AsyncConnection, operation_id: str) -> Refund | None:
    """The refund carried out by operation ``operation_id``, if it is one."""
    r = (
        (await conn.execute(select(refunds).where(refunds.c.operation_id == operation_id)))
        .mappings()
        .first()
    )
    return None if r is None else _refund_from_row(r)


async def list_refunds(conn: AsyncConnection, payment_id: str) -> list[Refund]:
    rows = await conn.execute(
        select(refunds).where(refunds.c.payment_id == payment_id).order_by(refunds.c.created_at)
    )
    return [_refund_from_row(r) for r in rows.mappings()]


@dataclass(frozen=True, slots=True)
class PaymentFilter:
    reference: str | None = None
    state: PaymentState | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


#: Payments page newest first on (created_at, id): the id breaks ties of one timestamp.
_PAGES: Final = Keyset(payments.c.created_at, payments.c.id)


async def list_payments(
    conn: AsyncConnection, f: PaymentFilter, *, limit: int, cursor: str | None
) -> Page[Payment]:
    """Newest first, keyset-paginated on (created_at, id): the page and the next cursor.

    Raises :class:`~tillbridge.errors.InvalidCursor` for a cursor that is not one of ours.
    """
    q = select(payments)
    if f.reference is not None:
        q = q.where(payments.c.reference == f.reference)
    if f.state is not None:
        q = q.where(payments.c.state == str(f.state))
    if f.created_from is not None:
        q = q.where(payments.c.created_at >= f.created_from)
    if f.created_to is not None:
        q = q.where(payments.c.created_at < f.created_to)
    rows = list(await conn.execute(_PAGES.paginate(q, cursor, limit)))
    return _PAGES.page(rows, limit).map(lambda r: _payment_from_row(r._mapping))
