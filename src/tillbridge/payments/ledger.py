"""The ledger of the payment engine: every committed change to a payment goes through here.

:class:`Ledger` holds what every part of the engine shares (the database, the connectors by
name, the family runtimes, the listeners) and commits changes: :meth:`Ledger.record_change`
(audit entry and listeners, in the transaction of the change) and :meth:`Ledger.apply` (an
operation's outcome, idempotent). :class:`~tillbridge.payments.engine.PaymentEngine` builds on it
(create, execute, cancel, refund, resolve) and :class:`~tillbridge.payments.recovery.Recovery`
uses it; neither depends on the other's internals.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.audit.log import record as audit_record
from tillbridge.clock import Clock, utcnow
from tillbridge.domain.payments import Operation, Payment, new_id
from tillbridge.domain.states import OperationKind, Outcome, PaymentState
from tillbridge.errors import (
    ConcurrentUpdate,
    NotFound,
    ValidationError,
)
from tillbridge.observability.redaction import Redactor
from tillbridge.payments.contract import (
    Connector,
    ConnectorResult,
    Evidence,
    OperationRequest,
)
from tillbridge.payments.families import FamilyRuntime, Lease, Snapshot
from tillbridge.queue import PermanentFailure
from tillbridge.store import payments_repo as repo
from tillbridge.store.db import Database

log = structlog.get_logger("tillbridge.payments")

#: Called inside the transaction of every payment state change, after the change is saved:
#: ``listener(conn, payment, previous_state)``. Listeners enqueue follow-up work (outgoing
#: webhooks, ERP write-back) in that same transaction, so it exists iff the change committed.
#: They must not do I/O beyond the connection, and must tolerate being called for any state.
PaymentListener = Callable[[AsyncConnection, Payment, PaymentState | None], Awaitable[None]]

#: How often :meth:`Ledger.apply` reads afresh after losing a race to a concurrent change.
APPLY_ATTEMPTS = 3
#: Payment states in which the first operation's outcome still decides the state.
OPEN_STATES = frozenset({PaymentState.CREATED, PaymentState.IN_PROGRESS, PaymentState.UNKNOWN})


def is_primary(p: Payment, op: Operation) -> bool:
    """True for the operation whose outcome is the payment's (its first: purchase or a
    standalone refund); False for refunds of a captured payment."""
    return op.kind in (OperationKind.PURCHASE, OperationKind.REFUND) and p.captured_minor == 0


class Ledger:
    """Shared state and committed changes of the payment engine (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        connectors: Mapping[str, Connector],
        families: Sequence[FamilyRuntime],
        *,
        redactor: Redactor,
        clock: Clock = utcnow,
        listeners: Sequence[PaymentListener] = (),
    ) -> None:
        self.db = db
        self.connectors = dict(connectors)
        self.families = {f.family: f for f in families}
        self.redactor = redactor
        self.clock = clock
        self.listeners = tuple(listeners)

    # lookup -------------------------------------------------------------------------------------

    def connector(self, name: str) -> Connector:
        try:
            return self.connectors[name]
        except KeyError:
            known = ", ".join(sorted(self.connectors)) or "none"
            raise ValidationError(
                f"unknown connector {name!r} (configured: {known})", code="unknown_connector"
            ) from None

    def family(self, connector: Connector) -> FamilyRuntime:
        return self.families[connector.family]

    def job_connector(self, name: str) -> Connector:
        """The connector a job names; a job for one that is no longer configured cannot run."""
        try:
            return self.connectors[name]
        except KeyError:
            raise PermanentFailure(f"connector {name} is not configured in this process") from None

    # audit and listeners ------------------------------------------------------------------------

    async def record_change(
        self,
        conn: AsyncConnection,
        action: str,
        p: Payment,
        actor: str,
        previous: PaymentState | None = None,
        *,
        notify: bool = True,
        **payload: Any,
    ) -> None:
        """Audit a change and tell the listeners, in the transaction that made the change."""
        if notify:
            for listener in self.listeners:
                await listener(conn, p, previous)
        await audit_record(
            conn,
            action=action,
            actor=actor,
            subject_type="payment",
            subject_id=p.id,
            payload={"state": str(p.state), **payload},
            redactor=self.redactor,
        )

    async def request(
        self, conn: AsyncConnection | None, snap: Snapshot, fam: FamilyRuntime
    ) -> OperationRequest:
        """The :class:`OperationRequest` for ``snap``, with the evidence recorded so far. A
        follow-up operation (a refund of a sale) carries the sale's evidence, read through
        ``conn``; the first operation needs no read."""
        p, op = snap.p, snap.op
        original = None
        if not is_primary(p, op):
            if conn is None:
                async with self.db.read() as c:
                    first = (await repo.list_operations(c, p.id))[0]
            else:
                first = (await repo.list_operations(conn, p.id))[0]
            original = Evidence(
                provider_reference=first.detail.get("provider_reference"),
                trace_number=first.detail.get("trace_number"),
                receipt_number=first.detail.get("receipt_number"),
            )
        return OperationRequest(
            operation_id=op.id,
            payment_id=p.id,
            kind=op.kind,
            amount=op.amount,
            reference=p.reference,
            echo_id=op.echo_id,
            metadata=p.metadata,
            evidence=fam.evidence(snap),
            original=original,
        )

    # apply --------------------------------------------------------------------------------------

    async def apply(
        self,
        payment_id: str,
        operation_id: str,
        result: ConnectorResult,
        *,
        actor: str,
        lease: Lease | None = None,
        known: Snapshot | None = None,
    ) -> Payment:
        """Commit ``result`` for the operation; idempotent (also the ``payment.apply`` job).

        Evidence is always stored. The state changes only while the outcome is open: a payment
        an operator settled meanwhile keeps the operator's decision, and a second ``unknown``
        changes nothing. ``known`` is the snapshot as the caller last saved it (saves reads);
        a concurrent change is caught by the version check and everything is read afresh.
        """
        name = known.p.connector if known is not None else await self.connector_of(payment_id)
        fam = self.family(self.job_connector(name))
        async with fam.result_rows(lease) as rows:
            snap = known
            for attempt in range(APPLY_ATTEMPTS):
                try:
                    p = await self._apply_once(
                        fam, payment_id, operation_id, result, actor, rows, snap
                    )
                    break
                except ConcurrentUpdate:
                    # Someone else changed it first (a duplicate notification, an operator):
                    # read it afresh; applying is idempotent, so the loser becomes a no-op.
                    if attempt == APPLY_ATTEMPTS - 1:
                        raise
                    snap = None
        fam.notify(payment_id)
        return p

    async def connector_of(self, payment_id: str) -> str:
        async with self.db.read() as conn:
            return (await repo.get_payment(conn, payment_id)).connector

    async def _apply_once(
        self,
        fam: FamilyRuntime,
        payment_id: str,
        operation_id: str,
        result: ConnectorResult,
        actor: str,
        rows: list[Any],
        known: Snapshot | None,
    ) -> Payment:
        async with self.db.write() as conn:
            snap = known or await fam.snapshot(conn, payment_id, operation_id)
            now = self.clock()
            await fam.on_result(conn, snap, result, now, rows)
            if snap.op.outcome not in (None, Outcome.UNKNOWN, Outcome.PENDING) or (
                result.outcome == Outcome.UNKNOWN and snap.op.outcome == Outcome.UNKNOWN
            ):
                return snap.p
            primary = is_primary(snap.p, snap.op)
            if primary and snap.p.state not in OPEN_STATES:
                return snap.p  # settled meanwhile (canceled before sending, or an operator)
            # Work on copies: a failed version check must leave the caller's objects as saved.
            p, op = copy.deepcopy(snap.p), copy.deepcopy(snap.op)
            reason = (
                None
                if result.outcome == Outcome.SUCCEEDED
                else (result.reason or str(result.outcome))
            )
            op.record(
                result.outcome, now, reason=reason,
                provider_reference=result.provider_reference,
                trace_number=result.trace_number, receipt_number=result.receipt_number,
                masked_pan=result.masked_pan, auth_code=result.auth_code,
            )  # fmt: skip
            prev = p.state
            if primary:
                await self._settle_primary(conn, p, op, result.outcome, reason=reason)
            else:
                await self._settle_follow_up(conn, p, op, result.outcome)
            await repo.save_payment(conn, p)
            await repo.save_operation(conn, op)
            await self.record_change(
                conn, "payment.state_changed" if p.state != prev else "payment.operation_settled",
                p, actor, prev, outcome=str(result.outcome), operation=op.kind.value,
                connector=p.connector,
            )  # fmt: skip
            return p

    async def _settle_primary(
        self,
        conn: AsyncConnection,
        p: Payment,
        op: Operation,
        outcome: Outcome,
        *,
        reason: str | None,
    ) -> None:
        """Apply the first operation's outcome to ``p`` (in memory; the caller saves ``p``).

        A succeeded standalone refund (a terminal paid the amount back to a card) ends
        ``refunded``: recorded as captured and then refunded in full, so refund totals and the
        ``payment.refunded`` event are right and a listener never mistakes it for a sale.
        """
        now = self.clock()
        if op.kind == OperationKind.REFUND and outcome == Outcome.SUCCEEDED:
            p.transition(PaymentState.CAPTURED, now)
            refund = p.request_refund(op.amount, new_id("re"), op.id, now)
            await repo.insert_refund(conn, refund)
            p.settle_refund(refund, Outcome.SUCCEEDED, now)
            await repo.save_refund(conn, refund)
            return
        p.apply_purchase_outcome(outcome, now, reason=reason)

    async def _settle_follow_up(
        self, conn: AsyncConnection, p: Payment, op: Operation, outcome: Outcome
    ) -> None:
        """A refund of a captured payment: settle its reserved amount."""
        refund = await repo.get_refund_of(conn, op.id)
        if refund is None:
            raise NotFound(f"operation {op.id} carries no refund")
        if outcome == Outcome.PENDING:
            outcome = Outcome.UNKNOWN  # a refund in flight keeps its amount reserved
        p.settle_refund(refund, outcome, self.clock())
        await repo.save_refund(conn, refund)
