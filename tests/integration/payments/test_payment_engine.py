"""The payment engine against real databases and the fake connector (job handlers called directly).

What matters here is persisted state: the payment row, its operation's outcome, and how often
money moved at the "provider" (the fake connector's ledger).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tillbridge.connectors.gateways.fake import FakeConnector
from tillbridge.domain.states import Outcome, PaymentState
from tillbridge.errors import IllegalTransition, ValidationError
from tillbridge.money import Money
from tillbridge.observability.redaction import Redactor
from tillbridge.payments.engine import NewPayment, PaymentEngine
from tillbridge.payments.families import OnlineFamily
from tillbridge.payments.jobs import EXECUTE_JOB, RECOVER_JOB
from tillbridge.queue.tables import jobs
from tillbridge.store import payments_repo as repo
from tillbridge.store.db import Database

pytestmark = pytest.mark.anyio


def service(db: Database) -> tuple[PaymentEngine, FakeConnector]:
    fake = FakeConnector()
    return PaymentEngine(db, {"fake": fake}, [OnlineFamily()], redactor=Redactor([])), fake


async def create(svc: PaymentEngine, db: Database, minor: int) -> tuple[str, str]:
    async with db.write() as conn:
        p = await svc.create(
            conn,
            NewPayment(Money(minor, "EUR"), "SO042", "fake", {}),
            actor="test",
            idempotency_key=None,
        )
        ops = await repo.list_operations(conn, p.id)
    return p.id, ops[0].id


async def jobs_of(db: Database, kind: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = await conn.execute(select(jobs).where(jobs.c.kind == kind))
        return [dict(r) for r in rows.mappings()]


async def test_create_commits_payment_operation_and_job_together(db: Database) -> None:
    svc, _ = service(db)
    pid, op_id = await create(svc, db, 1234)
    async with db.read() as conn:
        p = await repo.get_payment(conn, pid)
        op = await repo.get_operation(conn, op_id)
    assert p.state == PaymentState.CREATED
    assert op.echo_id.startswith("tx_")  # persisted before anything is sent
    [job] = await jobs_of(db, EXECUTE_JOB)
    assert job["payload"] == {"payment_id": pid, "operation_id": op_id, "connector": "fake"}


async def test_rolled_back_create_leaves_nothing(db: Database) -> None:
    svc, _ = service(db)
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await svc.create(
                conn,
                NewPayment(Money(100, "EUR"), "R", "fake", {}),
                actor="t",
                idempotency_key=None,
            )
            raise RuntimeError("boom")
    async with db.read() as conn:
        from tillbridge.store.tables import payments

        assert (await conn.execute(select(func.count()).select_from(payments))).scalar() == 0
    assert await jobs_of(db, EXECUTE_JOB) == []


@pytest.mark.parametrize(
    ("minor", "state", "outcome"),
    [
        (1234, PaymentState.CAPTURED, Outcome.SUCCEEDED),  # ordinary amount
        (2051, PaymentState.DECLINED, Outcome.DECLINED),  # ..51 declines
        (3099, PaymentState.UNKNOWN, Outcome.UNKNOWN),  # ..99 times out after sending
    ],
)
async def test_execute_applies_the_outcome(
    db: Database, minor: int, state: PaymentState, outcome: Outcome
) -> None:
    svc, _fake = service(db)
    pid, op_id = await create(svc, db, minor)
    await svc.execute(pid, op_id, "fake")
    async with db.read() as conn:
        p = await repo.get_payment(conn, pid)
        op = await repo.get_operation(conn, op_id)
    assert (p.state, op.outcome) == (state, outcome)
    if outcome == Outcome.UNKNOWN:
        assert len(await jobs_of(db, RECOVER_JOB)) == 1


async def test_unknown_is_recovered_by_asking_and_money_moves_once(db: Database) -> None:
    svc, fake = service(db)
    pid, op_id = await create(svc, db, 3099)
    await svc.execute(pid, op_id, "fake")
    [job] = await jobs_of(db, RECOVER_JOB)
    await svc.recovery.job(pid, op_id, job["payload"]["connector"])
    async with db.read() as conn:
        p = await repo.get_payment(conn, pid)
    assert p.state == PaymentState.CAPTURED
    async with db.read() as conn:
        echo = (await repo.get_operation(conn, op_id)).echo_id
    assert fake.charges == {echo: 1}


async def test_execute_twice_is_a_noop(db: Database) -> None:
    svc, fake = service(db)
    pid, op_id = await create(svc, db, 1234)
    await svc.execute(pid, op_id, "fake")
    await svc.execute(pid, op_id, "fake")  # the job delivered again (at-least-once)
    assert sum(fake.charges.values()) == 1


async def test_worker_death_after_in_progress_never_resends(db: Database) -> None:
    """A worker that committed in_progress and died: the rerun asks instead of resending."""
    svc, fake = service(db)
    pid, op_id = await create(svc, db, 1234)
    async with db.write() as conn:  # what the dead worker had committed before sending
        p = await repo.get_payment(conn, pid)
        p.transition(PaymentState.IN_PROGRESS, p.updated_at)
        await repo.save_payment(conn, p)
    await svc.execute(pid, op_id, "fake")  # the job comes back after the lease expired
    async with db.read() as conn:
        p = await repo.get_payment(conn, pid)
    assert p.state == PaymentState.UNKNOWN
    assert fake.charges == {}  # nothing was sent again
    [job] = await jobs_of(db, RECOVER_JOB)
    await svc.recovery.job(pid, op_id, job["payload"]["connector"])
    async with db.read() as conn:
        p = await repo.get_payment(conn, pid)
    # The fake never saw it (it "died" with the worker): no record means it never arrived.
    assert p.state == PaymentState.FAILED


async def test_operator_resolves_unknown_and_it_is_audited(db: Database) -> None:
    from tillbridge.audit.log import query

    svc, _ = service(db)
    pid, op_id = await create(svc, db, 3099)
    await svc.execute(pid, op_id, "fake")
    with pytest.raises(ValidationError):
        await svc.resolve(pid, outcome="succeeded", reason=" ", actor="operator:ann")
    p = await svc.resolve(pid, outcome="succeeded", reason="seen on terminal", actor="operator:ann")
    assert p.state == PaymentState.CAPTURED
    with pytest.raises(IllegalTransition):
        await svc.resolve(pid, outcome="failed", reason="again", actor="operator:ann")
    async with db.read() as conn:
        entries = (await query(conn, subject_type="payment", subject_id=pid)).items
    actions = [e.action if hasattr(e, "action") else e["action"] for e in entries]
    assert "payment.resolved" in actions


async def test_cancel_before_execution_stops_the_sale(db: Database) -> None:
    svc, fake = service(db)
    pid, op_id = await create(svc, db, 1234)
    p = await svc.cancel(pid, actor="test")
    assert p.state == PaymentState.CANCELED
    await svc.execute(pid, op_id, "fake")
    assert fake.charges == {}


async def test_unknown_connector_is_a_validation_error(db: Database) -> None:
    svc, _ = service(db)
    with pytest.raises(ValidationError):
        async with db.write() as conn:
            await svc.create(
                conn, NewPayment(Money(1, "EUR"), "R", "nope", {}), actor="t", idempotency_key=None
            )


async def test_a_result_that_arrives_later_is_applied_once_by_the_apply_job(
    db_url: str,
) -> None:
    """``payment.apply``: a notification's result, committed like any other, idempotently."""
    from tillbridge import testing
    from tillbridge.app.jobs import build_registry
    from tillbridge.payments.contract import ConnectorResult
    from tillbridge.payments.jobs import (
        APPLY_JOB,
        apply_payload,
        result_from_payload,
        result_payload,
    )
    from tillbridge.queue import Worker, enqueue

    rt = testing.make_runtime(db_url)
    try:
        pid, op_id = await create(rt.payments, rt.db, 3099)  # ..99: unknown after sending
        await rt.payments.execute(pid, op_id)
        result = ConnectorResult(Outcome.SUCCEEDED, provider_reference="prov-1", auth_code="42")
        assert result_from_payload(result_payload(result)) == result
        payload = apply_payload(pid, op_id, result, actor="webhook:test")
        async with rt.db.write() as conn:
            for _ in range(2):  # the same notification delivered twice
                await enqueue(conn, APPLY_JOB, payload)
        await Worker(rt.db, build_registry(rt), poll_interval=0.01).run_until_idle()
        async with rt.db.read() as conn:
            p = await repo.get_payment(conn, pid)
            op = await repo.get_operation(conn, op_id)
        assert p.state == PaymentState.CAPTURED and op.outcome == Outcome.SUCCEEDED
        assert op.detail["provider_reference"] == "prov-1"
        assert [j["status"] for j in await jobs_of(rt.db, APPLY_JOB)] == ["succeeded"] * 2
    finally:
        await rt.close()


async def test_jobs_queued_by_the_earlier_terminal_engine_still_run(db_url: str) -> None:
    """``terminal.execute`` jobs queued before an upgrade carry only payment and terminal."""
    from tillbridge import testing
    from tillbridge.app.jobs import build_registry
    from tillbridge.config import MerchantConfig
    from tillbridge.connectors.terminals.sandbox import SandboxTerminal, SandboxTerminalConfig
    from tillbridge.queue import Worker, enqueue

    rt = testing.make_runtime(db_url, MerchantConfig(terminals={"t1": SandboxTerminalConfig()}))
    try:
        async with rt.db.write() as conn:
            p = await rt.payments.create(
                conn, NewPayment(Money(1234, "EUR"), "R", "t1", {}), actor="t", idempotency_key=None
            )
            await conn.execute(jobs.delete())  # as if the old engine had queued it
            await enqueue(conn, "terminal.execute", {"payment_id": p.id, "terminal": "t1"})
        await Worker(rt.db, build_registry(rt), poll_interval=0.01).run_until_idle()
        async with rt.db.read() as conn:
            assert (await repo.get_payment(conn, p.id)).state == PaymentState.CAPTURED
        sandbox = rt.connectors["t1"]
        assert isinstance(sandbox, SandboxTerminal) and sandbox.charges == 1
    finally:
        await rt.close()
