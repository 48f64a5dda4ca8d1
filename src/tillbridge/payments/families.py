"""What differs between connector families, as data and a small runtime each.

The engine (:mod:`.engine`) runs one flow for every payment: persist, lease, mark sending, call,
apply, recover. A :class:`FamilyRuntime` supplies the parts that differ between a terminal on
the shop floor and an online provider:

* the **job key** that serializes work on one counterpart (a terminal runs one conversation at a
  time: every job of terminal ``lane1`` is keyed ``terminal:lane1``; an online payment's jobs
  are keyed by payment);
* the **lease** held while talking to it (card-present: the in-process link lock; online: none);
* its own **bookkeeping** committed in the engine's transactions (card-present: the terminal
  side of the payment, the terminal's last trace, events);
* its **recovery policy**, as data (:class:`RecoveryPolicy`).

Contract for implementations: hooks that take ``conn`` write only through it (they are part of
the engine's transaction: the change commits iff the payment's does) and never talk to the
counterpart. Hooks that talk to the counterpart (``before_send``) run under the lease and must
never move money. Every hook must be safe to run again for the same payment (jobs run at least
once).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.domain.payments import Operation, Payment
from tillbridge.errors import IllegalTransition
from tillbridge.payments.contract import (
    Call,
    Connector,
    ConnectorResult,
    Evidence,
    Family,
    NoCall,
)
from tillbridge.store import payments_repo as repo

#: How a family asks the engine to recover another operation under the lease it holds
#: (``recover(payment_id, operation_id)``): one status query, never a resend.
RecoverFn = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """How an ``unknown`` outcome is recovered (asked about, never resent).

    ``immediate``: the first status query runs at once, still under the lease (a terminal that
    can only repeat its *last* transaction must be asked before its next sale). Then one query
    after each delay of ``backoff``. ``ask_again_when_answered``: ask again when the counterpart
    answered but could not tell; when False, only a query that could not reach it is repeated.
    What is still unknown after the last query goes to an operator.
    """

    backoff: tuple[timedelta, ...]
    immediate: bool = False
    ask_again_when_answered: bool = True

    def delay_before(self, asked: int) -> timedelta | None:
        """The wait before the next status query when ``asked`` queries were made so far, or
        ``None`` when recovery has asked enough."""
        delays = ((timedelta(0),) if self.immediate else ()) + self.backoff
        return delays[asked] if 0 <= asked < len(delays) else None


#: Online providers: ask after 2 s, 10 s and 60 s.
ONLINE_RECOVERY: Final = RecoveryPolicy(
    backoff=(timedelta(seconds=2), timedelta(seconds=10), timedelta(seconds=60))
)


@dataclass(slots=True)
class Snapshot:
    """A payment and the operation a job works on, as read in one transaction, plus whatever
    the family reads along (``extra``)."""

    p: Payment
    op: Operation
    extra: Any = None


@dataclass(slots=True)
class Lease:
    """The right to talk to a counterpart, held for one job (see :meth:`FamilyRuntime.lease`).

    ``call`` is what the connector gets for a money call; ``state`` is the family's own.
    """

    connector: Connector
    call: Call = field(default_factory=NoCall)
    state: Any = None


class FamilyRuntime(Protocol):
    """The family-specific parts of the payment flow (see the module docstring)."""

    family: Family
    recovery: RecoveryPolicy
    #: Who the audit log names for the engine's own changes on this family's payments.
    actor: str

    def job_key(self, connector: str, payment_id: str) -> str:
        """The queue key of every job that talks to this counterpart for this payment."""
        ...

    async def on_created(
        self, conn: AsyncConnection, p: Payment, op: Operation, now: datetime
    ) -> None:
        """The payment and its first operation were just inserted (nothing is sent)."""
        ...

    def lease(
        self, connector: Connector, payment_id: str
    ) -> contextlib.AbstractAsyncContextManager[Lease]:
        """Hold the counterpart for one job. Raises :class:`~tillbridge.errors.TerminalBusy`
        when another session holds it (nothing was sent)."""
        ...

    async def snapshot(self, conn: AsyncConnection, payment_id: str, operation_id: str) -> Snapshot:
        """The payment, the operation and the family's own rows, in one read."""
        ...

    def ready(self, snap: Snapshot, now: datetime) -> bool:
        """True when the operation can be sent at once, with nothing to settle or ask first."""
        ...

    def too_late(self, snap: Snapshot, now: datetime) -> str | None:
        """Why a queued payment must not start any more (its customer is gone), or None."""
        ...

    async def before_send(self, lease: Lease, snap: Snapshot, recover: RecoverFn) -> Snapshot:
        """Settle what must be settled before this one is sent (under the lease; never moves
        money; ``recover`` asks about another operation). Returns the snapshot as it is now."""
        ...

    async def on_sending(self, conn: AsyncConnection, snap: Snapshot, now: datetime) -> None:
        """Persist before send: the operation is being committed as sent."""
        ...

    def calling(self, lease: Lease, snap: Snapshot) -> contextlib.AbstractAsyncContextManager[Call]:
        """The :class:`~tillbridge.payments.contract.Call` for one money call (events, the
        decision-point hook, abort requests), torn down when the call returns."""
        ...

    def result_rows(self, lease: Lease | None) -> contextlib.AbstractAsyncContextManager[list[Any]]:
        """Around the transaction that applies a result: whatever the family buffered for it
        (card-present: display events), given back if the transaction fails."""
        ...

    async def on_result(
        self,
        conn: AsyncConnection,
        snap: Snapshot,
        result: ConnectorResult,
        now: datetime,
        rows: list[Any],
    ) -> None:
        """A result (or a status query's answer) is being committed for ``snap``."""
        ...

    def evidence(self, snap: Snapshot) -> Evidence:
        """What was persisted about the operation, for the status query."""
        ...

    def handed_over(self, snap: Snapshot) -> bool:
        """True once recovery gave the payment to an operator (nothing more to ask)."""
        ...

    def superseded(self, snap: Snapshot) -> bool:
        """True when a ``query_last_only`` counterpart ran another transaction after this one,
        so its "last transaction" no longer tells anything about ours."""
        ...

    async def note(self, conn: AsyncConnection, snap: Snapshot, text: str, now: datetime) -> None:
        """Something recovery does, in words, for whoever follows the payment."""
        ...

    async def on_query(
        self, conn: AsyncConnection, snap: Snapshot, asked: int, text: str, now: datetime
    ) -> None:
        """Status query number ``asked`` was answered (``text`` says how)."""
        ...

    def instruction(self, snap: Snapshot) -> str:
        """What an operator does with a payment recovery could not settle."""
        ...

    async def on_give_up(
        self, conn: AsyncConnection, snap: Snapshot, why: str, text: str, now: datetime
    ) -> None:
        """Recovery hands the payment to an operator (``text`` is the instruction)."""
        ...

    async def request_abort(self, p: Payment, actor: str) -> Payment:
        """Ask the counterpart to stop the running payment ``p``. Never moves money."""
        ...

    def notify(self, payment_id: str) -> None:
        """Something about ``payment_id`` was committed (wake local watchers)."""
        ...


class OnlineFamily:
    """Online providers and sandboxes: no link to hold, no bookkeeping of their own."""

    family = Family.ONLINE
    recovery = ONLINE_RECOVERY
    actor = "worker"

    def job_key(self, connector: str, payment_id: str) -> str:
        return f"payment:{payment_id}"

    async def on_created(
        self, conn: AsyncConnection, p: Payment, op: Operation, now: datetime
    ) -> None:
        return None

    @contextlib.asynccontextmanager
    async def lease(self, connector: Connector, payment_id: str) -> AsyncIterator[Lease]:
        yield Lease(connector)

    async def snapshot(self, conn: AsyncConnection, payment_id: str, operation_id: str) -> Snapshot:
        p = await repo.get_payment(conn, payment_id)
        op = await repo.get_operation(conn, operation_id)
        return Snapshot(p, op)

    def ready(self, snap: Snapshot, now: datetime) -> bool:
        return True

    def too_late(self, snap: Snapshot, now: datetime) -> str | None:
        return None

    async def before_send(self, lease: Lease, snap: Snapshot, recover: RecoverFn) -> Snapshot:
        return snap

    async def on_sending(self, conn: AsyncConnection, snap: Snapshot, now: datetime) -> None:
        return None

    @contextlib.asynccontextmanager
    async def calling(self, lease: Lease, snap: Snapshot) -> AsyncIterator[Call]:
        yield lease.call

    @contextlib.asynccontextmanager
    async def result_rows(self, lease: Lease | None) -> AsyncIterator[list[Any]]:
        yield []

    async def on_result(
        self,
        conn: AsyncConnection,
        snap: Snapshot,
        result: ConnectorResult,
        now: datetime,
        rows: list[Any],
    ) -> None:
        return None

    def evidence(self, snap: Snapshot) -> Evidence:
        return Evidence(provider_reference=snap.op.detail.get("provider_reference"))

    def handed_over(self, snap: Snapshot) -> bool:
        return False

    def superseded(self, snap: Snapshot) -> bool:
        return False

    async def note(self, conn: AsyncConnection, snap: Snapshot, text: str, now: datetime) -> None:
        return None

    async def on_query(
        self, conn: AsyncConnection, snap: Snapshot, asked: int, text: str, now: datetime
    ) -> None:
        return None

    def instruction(self, snap: Snapshot) -> str:
        return (
            f"Outcome unknown: check the {snap.op.kind} of {snap.op.amount} with the provider "
            f"behind connector {snap.p.connector} (reference {snap.op.echo_id}), then run "
            f'`tillbridge payments resolve {snap.p.id} --as succeeded|failed --reason "..."`. '
            "Do not repeat the payment until then: the money may have moved."
        )

    async def on_give_up(
        self, conn: AsyncConnection, snap: Snapshot, why: str, text: str, now: datetime
    ) -> None:
        return None

    async def request_abort(self, p: Payment, actor: str) -> Payment:
        raise IllegalTransition(
            f"payment {p.id} is {p.state} and can no longer be canceled", code="not_cancelable"
        )

    def notify(self, payment_id: str) -> None:
        return None
