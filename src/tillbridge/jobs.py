"""The job kinds of the bridge and their handlers, registered on one :class:`JobRegistry`.

Handlers are thin: they unpack the payload and call a service. Their contract (at-least-once,
idempotent) is in :mod:`tillbridge.queue.registry`; the payment handlers are idempotent because
the payment engine checks the persisted state before it acts.
"""

from __future__ import annotations

from datetime import timedelta

from tillbridge.audit.log import purge_job
from tillbridge.queue import JobContext, JobRegistry, RetryPolicy
from tillbridge.runtime import Runtime
from tillbridge.services.idempotency import purge_expired
from tillbridge.services.payments import EXECUTE_JOB, RECOVER_JOB

AUDIT_PURGE_JOB = "audit.purge"
IDEMPOTENCY_PURGE_JOB = "idempotency.purge"

#: Connector calls: a few quick retries for errors outside the outcome taxonomy (a database
#: hiccup), then dead letter, where an operator sees it.
PAYMENT_RETRY = RetryPolicy(
    max_attempts=6, base_delay=timedelta(seconds=1), max_delay=timedelta(minutes=5)
)


def build_registry(rt: Runtime) -> JobRegistry:
    """Every job kind this process can run, with its retry policy and periodic schedule."""
    registry = JobRegistry()

    async def execute(ctx: JobContext) -> None:
        await rt.payments.execute(ctx.payload["payment_id"], ctx.payload["operation_id"])

    async def recover(ctx: JobContext) -> None:
        p = ctx.payload
        await rt.payments.recover(p["payment_id"], p["operation_id"], int(p.get("attempt", 0)))

    async def audit_purge(ctx: JobContext) -> None:
        await purge_job(rt.db, rt.settings.audit_retention_days, ctx.now())

    async def idempotency_purge(ctx: JobContext) -> None:
        async with rt.db.write() as conn:
            await purge_expired(conn, now=ctx.now())

    registry.register(EXECUTE_JOB, execute, retry=PAYMENT_RETRY)
    registry.register(RECOVER_JOB, recover, retry=PAYMENT_RETRY)
    registry.register(AUDIT_PURGE_JOB, audit_purge)
    registry.register(IDEMPOTENCY_PURGE_JOB, idempotency_purge)
    registry.periodic(AUDIT_PURGE_JOB, every=timedelta(days=1), offset=timedelta(hours=3))
    registry.periodic(IDEMPOTENCY_PURGE_JOB, every=timedelta(hours=1))
    rt.terminals.register_jobs(registry)  # terminal.execute, terminal.recover, terminal.settle
    rt.integrations.register_jobs(registry)  # webhook.process, webhooks.deliver, xentral.writeback
    return registry
