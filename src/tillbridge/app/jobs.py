"""Every job kind of one process, registered on one :class:`~tillbridge.queue.JobRegistry`.

Handlers are thin: they unpack the payload and call a service. Their contract (at-least-once,
idempotent) is in :mod:`tillbridge.queue.registry`. The kinds live with their features:
:mod:`tillbridge.payments.jobs` (execute, recover, apply), the terminal service (end of day),
the inbox (webhook processing), outgoing deliveries, and each ERP's parts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from tillbridge.app.runtime import Runtime
from tillbridge.audit.log import purge_job
from tillbridge.connectors.terminals import store as ts
from tillbridge.connectors.terminals.service import SETTLE_JOB
from tillbridge.inbound.inbox import PROCESS_JOB
from tillbridge.inbound.processing import PROCESS_RETRY, make_handler
from tillbridge.payments import jobs as pj
from tillbridge.queue import JobContext, JobRegistry
from tillbridge.services.idempotency import purge_expired
from tillbridge.webhooks_out.delivery import DELIVER_RETRY
from tillbridge.webhooks_out.events import DELIVER_JOB

AUDIT_PURGE_JOB: Final = "audit.purge"
IDEMPOTENCY_PURGE_JOB: Final = "idempotency.purge"


def build_registry(rt: Runtime) -> JobRegistry:
    """Every job kind this process can run, with its retry policy and periodic schedule."""
    registry = JobRegistry()
    engine = rt.payments

    async def execute(ctx: JobContext) -> None:
        p = ctx.payload
        await engine.execute(p["payment_id"], p["operation_id"], p.get("connector"))

    async def recover(ctx: JobContext) -> None:
        p = ctx.payload
        await engine.recovery.job(p["payment_id"], p["operation_id"], p.get("connector"))

    async def apply(ctx: JobContext) -> None:
        p = ctx.payload
        result = pj.result_from_payload(p["result"])
        await engine.apply(p["payment_id"], p["operation_id"], result, actor=p["actor"])

    async def legacy_terminal_job(ctx: JobContext) -> None:
        """``terminal.execute`` / ``terminal.recover`` of the earlier terminal engine: queued
        before an upgrade, they carry only the payment and the terminal."""
        pid = ctx.payload["payment_id"]
        async with rt.db.read() as conn:
            tp = await ts.get_terminal_payment(conn, pid)
        if ctx.kind in pj.LEGACY_RECOVER_JOBS:
            await engine.recovery.job(pid, tp.operation_id, tp.terminal)
        else:
            await engine.execute(pid, tp.operation_id, tp.terminal)

    async def settle(ctx: JobContext) -> None:
        await rt.terminals.settle(ctx.payload["settlement_id"], ctx.payload["terminal"])

    async def audit_purge(ctx: JobContext) -> None:
        await purge_job(rt.db, rt.settings.audit_retention_days, ctx.now())

    async def idempotency_purge(ctx: JobContext) -> None:
        async with rt.db.write() as conn:
            await purge_expired(conn, now=ctx.now())

    registry.register(pj.EXECUTE_JOB, execute, retry=pj.PAYMENT_RETRY)
    registry.register(pj.RECOVER_JOB, recover, retry=pj.PAYMENT_RETRY)
    registry.register(pj.APPLY_JOB, apply, retry=pj.PAYMENT_RETRY)
    for kind in (*pj.LEGACY_EXECUTE_JOBS, *pj.LEGACY_RECOVER_JOBS):
        registry.register(kind, legacy_terminal_job, retry=pj.PAYMENT_RETRY)
    registry.register(SETTLE_JOB, settle, retry=pj.PAYMENT_RETRY)
    registry.register(AUDIT_PURGE_JOB, audit_purge)
    registry.register(IDEMPOTENCY_PURGE_JOB, idempotency_purge)
    registry.periodic(AUDIT_PURGE_JOB, every=timedelta(days=1), offset=timedelta(hours=3))
    registry.periodic(IDEMPOTENCY_PURGE_JOB, every=timedelta(hours=1))
    integrations = rt.integrations
    registry.register(
        PROCESS_JOB, make_handler(rt.db, integrations.processors), retry=PROCESS_RETRY
    )
    registry.register(DELIVER_JOB, integrations.deliveries.deliver, retry=DELIVER_RETRY)
    for job in integrations.jobs:
        registry.register(job.kind, job.handler, retry=job.retry)
    return registry
