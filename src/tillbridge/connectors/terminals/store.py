"""Reading and writing the terminal tables. Every function takes the caller's connection.

The engine composes these inside its own transactions so that a state change, its events and
the terminal's bookkeeping commit together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import Label

from tillbridge.clock import as_utc
from tillbridge.connectors.terminals.tables import (
    terminal_payments,
    terminal_settlements,
    terminal_state,
)
from tillbridge.domain.payments import Operation, Payment
from tillbridge.domain.states import PaymentState
from tillbridge.errors import NotFound
from tillbridge.payments.contract import ConnectorResult
from tillbridge.store import payments_repo as repo
from tillbridge.store.sql import insert_or_ignore
from tillbridge.store.tables import operations, payments


@dataclass(slots=True)
class TerminalPayment:
    """The terminal side of one payment (a row of ``terminal_payments``)."""

    payment_id: str
    operation_id: str
    terminal: str
    kind: str
    start_by: datetime
    previous_echo_id: str | None = None
    previous_receipt: str | None = None
    sent_at: datetime | None = None
    result_outcome: str | None = None
    trace_number: str | None = None
    receipt_number: str | None = None
    result_code: str | None = None
    result_text: str | None = None
    masked_pan: str | None = None
    card_type: str | None = None
    card_name: str | None = None
    auth_code: str | None = None
    terminal_tid: str | None = None
    customer_receipt: list[str] = field(default_factory=list)
    merchant_receipt: list[str] = field(default_factory=list)
    detail: str | None = None
    recovery_attempts: int = 0
    needs_operator: bool = False
    cancel_requested_at: datetime | None = None

    @classmethod
    def from_row(cls, r: Mapping[Any, Any]) -> TerminalPayment:
        return cls(
            payment_id=r["payment_id"],
            operation_id=r["operation_id"],
            terminal=r["terminal"],
            kind=r["kind"],
            start_by=as_utc(r["start_by"]) or r["start_by"],
            previous_echo_id=r["previous_echo_id"],
            previous_receipt=r["previous_receipt"],
            sent_at=as_utc(r["sent_at"]),
            result_outcome=r["result_outcome"],
            trace_number=r["trace_number"],
            receipt_number=r["receipt_number"],
            result_code=r["result_code"],
            result_text=r["result_text"],
            masked_pan=r["masked_pan"],
            card_type=r["card_type"],
            card_name=r["card_name"],
            auth_code=r["auth_code"],
            terminal_tid=r["terminal_tid"],
            customer_receipt=list(r["customer_receipt"] or []),
            merchant_receipt=list(r["merchant_receipt"] or []),
            detail=r["detail"],
            recovery_attempts=r["recovery_attempts"] or 0,
            needs_operator=bool(r["needs_operator"]),
            cancel_requested_at=as_utc(r["cancel_requested_at"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """The API's view: identifiers, masked card data and receipts; never more."""
        return {
            "terminal": self.terminal,
            "kind": self.kind,
            "outcome": self.result_outcome,
            "trace_number": self.trace_number,
            "receipt_number": self.receipt_number,
            "previous_trace_number": self.previous_echo_id,
            "result_code": self.result_code,
            "result_text": self.result_text,
            "masked_pan": self.masked_pan,
            "card_type": self.card_type,
            "card_name": self.card_name,
            "auth_code": self.auth_code,
            "terminal_tid": self.terminal_tid,
            "customer_receipt": self.customer_receipt,
            "merchant_receipt": self.merchant_receipt,
            "detail": self.detail,
            "recovery_attempts": self.recovery_attempts,
            "needs_operator": self.needs_operator,
            "cancel_requested": self.cancel_requested_at is not None,
        }


async def insert_terminal_payment(
    conn: AsyncConnection, tp: TerminalPayment, now: datetime
) -> None:
    await conn.execute(
        insert(terminal_payments).values(
            payment_id=tp.payment_id,
            operation_id=tp.operation_id,
            terminal=tp.terminal,
            kind=tp.kind,
            start_by=tp.start_by,
            customer_receipt=[],
            merchant_receipt=[],
            recovery_attempts=0,
            needs_operator=False,
            created_at=now,
            updated_at=now,
        )
    )


async def get_terminal_payment(conn: AsyncConnection, payment_id: str) -> TerminalPayment:
    q = select(terminal_payments).where(terminal_payments.c.payment_id == payment_id)
    r = (await conn.execute(q)).mappings().first()
    if r is None:
        raise NotFound(
            f"payment {payment_id} did not run on a terminal", code="not_a_terminal_payment"
        )
    return TerminalPayment.from_row(r)


async def update_terminal_payment(
    conn: AsyncConnection, payment_id: str, now: datetime, **values: Any
) -> None:
    await conn.execute(
        update(terminal_payments)
        .where(terminal_payments.c.payment_id == payment_id)
        .values(updated_at=now, **values)
    )


def result_values(result: ConnectorResult) -> dict[str, Any]:
    """Columns of ``terminal_payments`` from a terminal result. Only fields the terminal
    reported are returned, so a later, thinner answer never erases earlier evidence."""
    values: dict[str, Any] = {
        "result_outcome": str(result.outcome),
        "trace_number": result.trace_number,
        "receipt_number": result.receipt_number,
        "result_code": result.result_code,
        "result_text": result.result_text,
        "masked_pan": result.masked_pan,  # masked by TerminalResult itself (6 + 4 at most)
        "card_type": result.card_type,
        "card_name": result.card_name,
        "auth_code": result.auth_code,
        "terminal_tid": result.terminal_id,
        "detail": result.detail,
    }
    if result.customer_receipt:
        values["customer_receipt"] = list(result.customer_receipt)
    if result.merchant_receipt:
        values["merchant_receipt"] = list(result.merchant_receipt)
    return {k: v for k, v in values.items() if v is not None}


# terminal state ----------------------------------------------------------------------------------


@dataclass(slots=True)
class TerminalState:
    terminal: str
    online: bool | None = None
    last_contact_at: datetime | None = None
    last_error: str | None = None
    terminal_tid: str | None = None
    last_trace: str | None = None
    last_receipt: str | None = None
    last_payment_id: str | None = None
    last_outcome: str | None = None
    needs_probe: bool = True


_ENSURE_STATE: Final = insert_or_ignore(terminal_state)


async def ensure_state(conn: AsyncConnection, terminal: str, now: datetime) -> None:
    """Create the terminal's state row if missing (idempotent, no failing statement)."""
    values = {"terminal": terminal, "needs_probe": True, "updated_at": now}
    await conn.execute(_ENSURE_STATE.on(conn), values)


def _state_from_row(r: Mapping[Any, Any]) -> TerminalState:
    return TerminalState(
        terminal=r["terminal"],
        online=r["online"],
        last_contact_at=as_utc(r["last_contact_at"]),
        last_error=r["last_error"],
        terminal_tid=r["terminal_tid"],
        last_trace=r["last_trace"],
        last_receipt=r["last_receipt"],
        last_payment_id=r["last_payment_id"],
        last_outcome=r["last_outcome"],
        needs_probe=bool(r["needs_probe"]),
    )


async def get_state(conn: AsyncConnection, terminal: str) -> TerminalState:
    q = select(terminal_state).where(terminal_state.c.terminal == terminal)
    r = (await conn.execute(q)).mappings().first()
    return TerminalState(terminal) if r is None else _state_from_row(r)


def _labeled(table: Table, prefix: str) -> list[Label[Any]]:
    return [c.label(f"{prefix}{c.name}") for c in table.c]


# Built once: SQLAlchemy's statement cache keys on the construct, and computing the key of a
# freshly built 80-column select costs more than running it.
_SNAPSHOT = (
    select(
        *_labeled(payments, "p_"),
        *_labeled(operations, "o_"),
        *_labeled(terminal_payments, "t_"),
        *_labeled(terminal_state, "s_"),
    )
    .select_from(
        payments.join(terminal_payments, terminal_payments.c.payment_id == payments.c.id)
        .join(operations, operations.c.payment_id == payments.c.id)
        .outerjoin(terminal_state, terminal_state.c.terminal == terminal_payments.c.terminal)
    )
    .where(payments.c.id == bindparam("payment_id"), operations.c.id == bindparam("operation_id"))
)


async def load_snapshot(
    conn: AsyncConnection, payment_id: str, operation_id: str
) -> tuple[Payment, Operation, TerminalPayment, TerminalState]:
    """A terminal payment with its operation and its terminal's state, in one query (the
    job's hot path: every round trip to the database is latency the customer waits for)."""
    q = _SNAPSHOT
    params = {"payment_id": payment_id, "operation_id": operation_id}
    r = (await conn.execute(q, params)).mappings().first()
    if r is None:
        raise NotFound(
            f"payment {payment_id} did not run on a terminal", code="not_a_terminal_payment"
        )

    def part(prefix: str) -> Any:
        return {k[len(prefix) :]: v for k, v in r.items() if k.startswith(prefix)}

    # The repository's own row mappers, so a payment reads the same on every path.
    p = repo._payment_from_row(part("p_"))
    op = repo._operation_from_row(part("o_"))
    tp = TerminalPayment.from_row(part("t_"))
    s = part("s_")
    st = TerminalState(tp.terminal) if s["terminal"] is None else _state_from_row(s)
    return p, op, tp, st


async def update_state(conn: AsyncConnection, terminal: str, now: datetime, **values: Any) -> None:
    stmt = (
        update(terminal_state)
        .where(terminal_state.c.terminal == terminal)
        .values(updated_at=now, **values)
    )
    if (await conn.execute(stmt)).rowcount == 0:  # the terminal's first contact
        await ensure_state(conn, terminal, now)
        await conn.execute(stmt)


async def queue_counts(conn: AsyncConnection, terminal: str) -> dict[str, int]:
    """How many of the terminal's payments wait (``created``) or run (``in_progress``)."""
    q = (
        select(payments.c.state, func.count())
        .where(
            payments.c.connector == terminal,
            payments.c.state.in_([str(PaymentState.CREATED), str(PaymentState.IN_PROGRESS)]),
        )
        .group_by(payments.c.state)
    )
    counts = {str(state): int(n) for state, n in (await conn.execute(q)).all()}
    return {
        "queued": counts.get(str(PaymentState.CREATED), 0),
        "running": counts.get(str(PaymentState.IN_PROGRESS), 0),
    }


async def running_payment(conn: AsyncConnection, terminal: str) -> str | None:
    q = (
        select(payments.c.id)
        .where(
            payments.c.connector == terminal,
            payments.c.state == str(PaymentState.IN_PROGRESS),
        )
        .order_by(payments.c.created_at.desc())
        .limit(1)
    )
    return (await conn.execute(q)).scalar_one_or_none()


# settlements -------------------------------------------------------------------------------------


async def insert_settlement(
    conn: AsyncConnection, sid: str, terminal: str, currency: str, actor: str, now: datetime
) -> None:
    await conn.execute(
        insert(terminal_settlements).values(
            id=sid,
            terminal=terminal,
            state="pending",
            currency=currency,
            schemes=[],
            receipt=[],
            requested_by=actor,
            created_at=now,
        )
    )


async def update_settlement(conn: AsyncConnection, sid: str, **values: Any) -> None:
    await conn.execute(
        update(terminal_settlements).where(terminal_settlements.c.id == sid).values(**values)
    )


def settlement_dict(r: RowMapping) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        u = as_utc(v)
        return None if u is None else u.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return {
        "id": r["id"],
        "terminal": r["terminal"],
        "state": r["state"],
        "currency": r["currency"],
        "total": r["total_minor"],
        "count": r["count"],
        "schemes": r["schemes"] or [],
        "first_receipt_number": r["first_receipt"],
        "last_receipt_number": r["last_receipt"],
        "trace_number": r["trace_number"],
        "result_code": r["result_code"],
        "result_text": r["result_text"],
        "receipt": r["receipt"] or [],
        "detail": r["detail"],
        "requested_by": r["requested_by"],
        "created_at": iso(r["created_at"]),
        "finished_at": iso(r["finished_at"]),
    }


async def get_settlement(conn: AsyncConnection, terminal: str, sid: str) -> dict[str, Any]:
    q = select(terminal_settlements).where(
        terminal_settlements.c.id == sid, terminal_settlements.c.terminal == terminal
    )
    r = (await conn.execute(q)).mappings().first()
    if r is None:
        raise NotFound(f"no end-of-day {sid} for terminal {terminal}", code="settlement_not_found")
    return settlement_dict(r)


async def list_settlements(
    conn: AsyncConnection, terminal: str, limit: int = 20
) -> list[dict[str, Any]]:
    q = (
        select(terminal_settlements)
        .where(terminal_settlements.c.terminal == terminal)
        .order_by(terminal_settlements.c.created_at.desc())
        .limit(limit)
    )
    return [settlement_dict(r) for r in (await conn.execute(q)).mappings()]
