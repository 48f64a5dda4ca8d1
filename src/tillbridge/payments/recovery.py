"""Recovering operations whose outcome is unknown: ask the counterpart, never resend.

An operation becomes ``unknown`` when the answer was lost after the request may have reached the
counterpart: a timeout, a cut link, garbage instead of a result, or the bridge dying while the
counterpart ran it. Recovery then asks (``Connector.query``) with what was persisted before
sending and what the counterpart reported before the answer was lost.

Rules, and why:

* Recovery runs under the same lease as the operation (same job key): a terminal is never asked
  about one sale while it runs the next.
* The family's :class:`~tillbridge.payments.families.RecoveryPolicy` says when to ask: card
  terminals at once, before their next sale can replace the answer (and the engine recovers a
  terminal's previous payment before sending the next one), online providers after delays.
* A counterpart that can only tell about its *last* transaction (``query_last_only``) is not
  asked once another payment ran after this one: recovery does not guess, it hands the payment
  to an operator.
* An answer that proves nothing is asked again only where the policy says so; a query that could
  not reach the counterpart (``reached=False``) is always asked again, within the policy.
* What stays unknown goes to an operator: audit ``payment.needs_operator`` with the instruction
  (and, for terminals, an ``operator`` event), settled with ``tillbridge payments resolve``.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.domain.states import Outcome
from tillbridge.errors import BridgeError, TerminalBusy
from tillbridge.payments import jobs
from tillbridge.payments.contract import ConnectorResult, OperationRequest
from tillbridge.payments.families import FamilyRuntime, Lease, Snapshot
from tillbridge.payments.ledger import Ledger
from tillbridge.queue import RetryLater, enqueue
from tillbridge.store import payments_repo as repo

log = structlog.get_logger("tillbridge.payments")

#: A terminal that just lost a link may still be finishing that session (it answers "busy"):
#: short waits before asking again within one attempt.
BUSY_WAITS_S: Final = (0.2, 0.5, 1.0, 2.0)
#: Answers that settle an operation.
DEFINITIVE: Final = frozenset({Outcome.SUCCEEDED, Outcome.DECLINED, Outcome.NOT_SENT})


class Recovery:
    """Recovery of one engine's operations (see the module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self.e = ledger

    async def resumed(self, fam: FamilyRuntime, lease: Lease, snap: Snapshot) -> None:
        """A job came back for an operation committed as sent: mark it unknown, recover."""
        result = ConnectorResult(
            Outcome.UNKNOWN, snap.op.kind, detail=f"the bridge stopped while {_who(fam)} was "
            "running this payment",
        )  # fmt: skip
        await self.e.apply(snap.p.id, snap.op.id, result, actor="recovery", lease=lease)
        await self.after_unknown(fam, lease, snap.p.id, snap.op.id)

    async def after_unknown(
        self, fam: FamilyRuntime, lease: Lease, payment_id: str, operation_id: str
    ) -> None:
        """The operation just became unknown: ask at once, or schedule the first question."""
        if fam.recovery.immediate:
            await self.recover_once(fam, lease, payment_id, operation_id)
            return
        async with self.e.db.write() as conn:
            snap = await fam.snapshot(conn, payment_id, operation_id)
            await self._schedule(conn, fam, snap, asked=snap.op.recovery_attempts)

    async def job(self, payment_id: str, operation_id: str, connector: str | None = None) -> None:
        """Job handler for ``payment.recover``: one status query under the lease."""
        if connector is None:
            connector = await self.e.connector_of(payment_id)
        c = self.e.job_connector(connector)
        fam = self.e.family(c)
        try:
            async with fam.lease(c, payment_id) as lease:
                await self.recover_once(fam, lease, payment_id, operation_id)
        except TerminalBusy as exc:
            raise RetryLater(exc.message, after=1.0) from None

    async def recover_once(
        self, fam: FamilyRuntime, lease: Lease, payment_id: str, operation_id: str
    ) -> None:
        """One recovery attempt; the caller holds the lease."""
        async with self.e.db.read() as conn:
            snap = await fam.snapshot(conn, payment_id, operation_id)
        if snap.op.outcome != Outcome.UNKNOWN or fam.handed_over(snap):
            return  # settled meanwhile (a late answer or an operator), or already handed over
        caps = lease.connector.capabilities
        if caps.query_last_only and fam.superseded(snap):
            await self.give_up(
                fam, snap, "another payment ran on the terminal after this one, and the "
                "terminal can only repeat its last transaction",
            )  # fmt: skip
            return
        if not caps.query:
            await self.give_up(fam, snap, f"connector {snap.p.connector} cannot be asked")
            return
        await self._note(fam, snap, _asking(fam))
        result = await self._ask(lease, await self.e.request(None, snap, fam))
        asked = snap.op.recovery_attempts + 1
        async with self.e.db.write() as conn:
            snap = await fam.snapshot(conn, payment_id, operation_id)
            snap.op.recovery_attempts = asked
            await repo.save_operation(conn, snap.op)
            text = (
                f"recovery: {result.detail or result.outcome}"
                if result.outcome in DEFINITIVE
                else f"recovery: still unknown ({result.detail})"
            )
            await fam.on_query(conn, snap, asked, text, self.e.clock())
        fam.notify(payment_id)
        if result.outcome in DEFINITIVE:
            await self.e.apply(payment_id, operation_id, result, actor="recovery", lease=lease)
            return
        again = not result.reached or fam.recovery.ask_again_when_answered
        if not again or fam.recovery.delay_before(asked) is None:
            # The counterpart answered and its answer does not prove anything (asking the same
            # question again gives the same answer), or recovery has asked enough.
            await self.give_up(fam, snap, result.detail or "the counterpart could not tell")
            return
        async with self.e.db.write() as conn:
            await self._schedule(conn, fam, snap, asked=asked)
        log.info("payment.recovery_scheduled", payment_id=payment_id, attempt=asked)

    async def _schedule(
        self, conn: AsyncConnection, fam: FamilyRuntime, snap: Snapshot, *, asked: int
    ) -> None:
        delay = fam.recovery.delay_before(asked)
        if delay is None:
            return
        await enqueue(
            conn,
            jobs.RECOVER_JOB,
            jobs.operation_payload(snap.p.id, snap.op.id, snap.p.connector),
            key=fam.job_key(snap.p.connector, snap.p.id),
            run_after=self.e.clock() + delay,
            # One follow-up per question: a job rerun after a lost completion asks no extra one.
            dedupe_key=f"{jobs.RECOVER_JOB}:{snap.op.id}:{asked}",
        )

    async def _ask(self, lease: Lease, req: OperationRequest) -> ConnectorResult:
        """``query``, waiting briefly while the counterpart finishes a broken session."""
        for wait in (*BUSY_WAITS_S, None):
            try:
                return await lease.connector.query(req)
            except TerminalBusy as exc:
                if wait is None:
                    detail = f"terminal busy: {exc.message}"
                    return ConnectorResult(Outcome.UNKNOWN, req.kind, detail=detail, reached=False)
                await asyncio.sleep(wait)
            except BridgeError as exc:
                detail = f"cannot ask the counterpart: {exc.message}"
                return ConnectorResult(Outcome.UNKNOWN, req.kind, detail=detail, reached=False)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _note(self, fam: FamilyRuntime, snap: Snapshot, text: str) -> None:
        async with self.e.db.write() as conn:
            await fam.note(conn, snap, text, self.e.clock())
        fam.notify(snap.p.id)

    async def give_up(self, fam: FamilyRuntime, snap: Snapshot, why: str) -> None:
        """Hand the payment to an operator: instruction in the audit log (and the family's)."""
        async with self.e.db.write() as conn:
            snap = await fam.snapshot(conn, snap.p.id, snap.op.id)
            text = fam.instruction(snap)
            await fam.on_give_up(conn, snap, why, text, self.e.clock())
            await self.e.record_change(
                conn, "payment.needs_operator", snap.p, "recovery", notify=False,
                connector=snap.p.connector, reason=why, instruction=text,
            )  # fmt: skip
        fam.notify(snap.p.id)
        log.warning("payment.needs_operator", payment_id=snap.p.id, reason=why)


def _who(fam: FamilyRuntime) -> str:
    return "the terminal" if fam.family == "card_present" else "the provider"


def _asking(fam: FamilyRuntime) -> str:
    if fam.family == "card_present":
        return "recovery: asking the terminal for its last transaction"
    return "recovery: asking the provider"
