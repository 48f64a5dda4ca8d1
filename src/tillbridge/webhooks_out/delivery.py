"""Delivering one outgoing webhook: the ``webhooks.deliver`` job (one attempt per run).

Per attempt: sign the stored body with the subscriber's secret (Standard Webhooks v1, a fresh
``webhook-timestamp``, the event's stable ``webhook-id``), POST it through the subscriber's
:class:`~tillbridge.outbound.OutboundClient` (breaker, audit log), log the attempt (status,
duration, error), then:

==========================  ===================================================================
answer                      what happens
==========================  ===================================================================
2xx                         delivered; the job completes in the same transaction as the log
410 Gone                    the subscriber is disabled (persisted, visible); its deliveries are
                            skipped until an operator enables it again
anything else, no answer,   retried on the schedule below (with jitter); a ``Retry-After`` is
breaker open                honoured (never retried sooner); after the last attempt: ``dead``
==========================  ===================================================================

Schedule (delay before attempt 1..10): immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
20 h, 24 h (the Standard Webhooks example; the last attempt is about 75 h after the first).
3xx counts as a failure (redirects are not followed). Receivers must dedupe on ``webhook-id``:
delivery is at least once (a worker can die after the POST and before recording it).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.errors import ConfigError, NotSent, OutcomeUnknown, PermanentFailure, RetryLater
from tillbridge.outbound import CallClass, parse_retry_after
from tillbridge.outbound.hub import OutboundHub
from tillbridge.queue import JobContext
from tillbridge.retry import RetryPolicy
from tillbridge.store.db import Database
from tillbridge.webhooks_out import signing
from tillbridge.webhooks_out.events import Subscription, disabled_subscribers
from tillbridge.webhooks_out.tables import (
    DEAD,
    RETRYING,
    SKIPPED,
    SUCCEEDED,
    webhook_deliveries,
    webhook_delivery_attempts,
    webhook_events,
    webhook_subscriber_state,
)

log = structlog.get_logger("tillbridge.webhooks_out")

#: Seconds to wait before attempt n (index n - 1).
SCHEDULE: Final = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_ATTEMPTS: Final = len(SCHEDULE)
#: Fraction by which a delay is randomly shortened or lengthened (subscribers that failed
#: together must not all come back in the same second).
JITTER: Final = 0.1
#: A Retry-After longer than this is capped: the schedule, not the receiver, bounds the wait.
MAX_RETRY_AFTER_S: Final = 86400.0
#: The job's own policy only caps attempts; every delay comes from the handler (RetryLater).
DELIVER_RETRY: Final = RetryPolicy(max_attempts=MAX_ATTEMPTS)
#: Standard Webhooks recommends a 15 to 30 s request timeout.
WEBHOOK_CALL: Final = CallClass("webhook", connect=5.0, read=15.0, write=10.0)
GROUP: Final = "webhooks"


def retry_delay(attempt: int, rng: random.Random, retry_after: float | None = None) -> float | None:
    """Seconds before the attempt after failed attempt ``attempt`` (1-based), or None (give up).

    ``retry_after`` (from the receiver) is a floor: we never come back sooner than asked.
    """
    if attempt >= MAX_ATTEMPTS:
        return None
    base = SCHEDULE[attempt] * (1 + JITTER * (2 * rng.random() - 1))
    if retry_after is not None:
        base = max(base, min(retry_after, MAX_RETRY_AFTER_S))
    return base


class DeliveryService:
    """Runs delivery attempts for the configured subscriptions."""

    def __init__(
        self,
        db: Database,
        hub: OutboundHub,
        subscriptions: Mapping[str, Subscription],
        *,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.hub = hub
        self.subscriptions = dict(subscriptions)
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    async def deliver(self, ctx: JobContext) -> None:
        """The ``webhooks.deliver`` handler; see the module docstring. Safe to run again."""
        delivery_id = int(ctx.payload["delivery_id"])
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(webhook_deliveries, webhook_events.c.body)
                    .join(webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id)
                    .where(webhook_deliveries.c.id == delivery_id)
                )
            ).first()
            if row is None:
                raise PermanentFailure(f"delivery {delivery_id} not found")
            d = row._mapping
            disabled = await disabled_subscribers(conn, [d["subscriber"]])
        if d["status"] == SUCCEEDED:
            return
        sub = self.subscriptions.get(d["subscriber"])
        if sub is None or disabled:
            why = "subscriber disabled" if disabled else "subscriber no longer configured"
            async with ctx.transaction() as conn:
                await _update(conn, delivery_id, SKIPPED, ctx.now(), error=why)
            return
        try:
            secret = sub.secret.resolve()
            headers = signing.headers(secret, d["event_id"], int(self.wall_clock()), d["body"])
        except ConfigError as exc:
            async with self.db.write() as conn:
                await _update(conn, delivery_id, DEAD, ctx.now(), error=exc.message)
            raise PermanentFailure(f"cannot sign for {sub.name}: {exc.message}") from None
        headers["content-type"] = "application/json"
        await self._attempt(ctx, delivery_id, int(d["attempts"]) + 1, sub, d["body"], headers)

    async def _attempt(
        self,
        ctx: JobContext,
        delivery_id: int,
        number: int,
        sub: Subscription,
        body: bytes,
        headers: dict[str, str],
    ) -> None:
        client = self.hub.client(f"webhook:{sub.name}", call_classes={"webhook": WEBHOOK_CALL})
        started = time.perf_counter()
        status: int | None = None
        retry_after: float | None = None
        error: str | None = None
        try:
            response = await client.request(
                "POST", sub.url, call_class="webhook", group=GROUP, content=body, headers=headers
            )
            status = response.status_code
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), now=self.wall_clock()
            )
            outcome = "succeeded" if 200 <= status < 300 else "gone" if status == 410 else "failed"
            if outcome == "failed":
                error = f"HTTP {status}"
        except NotSent as exc:
            outcome, error = "not_sent", exc.message
        except OutcomeUnknown as exc:
            outcome, error = "unknown", exc.message
        duration_ms = round((time.perf_counter() - started) * 1000.0, 3)
        now = ctx.now()
        attempt_row = {
            "delivery_id": delivery_id,
            "attempt": number,
            "at": now,
            "status_code": status,
            "duration_ms": duration_ms,
            "outcome": outcome,
            "error": error[:1000] if error else None,
        }
        if outcome in ("succeeded", "gone"):
            async with ctx.transaction() as conn:
                await conn.execute(webhook_delivery_attempts.insert().values(attempt_row))
                if outcome == "succeeded":
                    await _update(conn, delivery_id, SUCCEEDED, now, attempts=number, code=status)
                else:
                    await disable_subscriber(conn, sub.name, now, reason="410 Gone", url=sub.url)
                    await _update(
                        conn,
                        delivery_id,
                        SKIPPED,
                        now,
                        attempts=number,
                        code=status,
                        error="410 Gone: subscriber disabled",
                    )
            if outcome == "gone":
                log.warning("webhook.subscriber_disabled", subscriber=sub.name, status=410)
            return
        delay = retry_delay(ctx.attempt, self.rng, retry_after)
        async with self.db.write() as conn:
            await conn.execute(webhook_delivery_attempts.insert().values(attempt_row))
            await _update(
                conn,
                delivery_id,
                DEAD if delay is None else RETRYING,
                now,
                attempts=number,
                code=status,
                error=error,
                next_at=None if delay is None else now + timedelta(seconds=delay),
            )
        log.info(
            "webhook.delivery_failed",
            delivery_id=delivery_id,
            subscriber=sub.name,
            attempt=number,
            outcome=outcome,
            status=status,
            retry_in=None if delay is None else round(delay, 1),
        )
        if delay is None:
            raise PermanentFailure(f"delivery {delivery_id} failed {MAX_ATTEMPTS} times: {error}")
        raise RetryLater(f"delivery {delivery_id}: {error}", after=delay)


async def _update(
    conn: AsyncConnection,
    delivery_id: int,
    status: str,
    now: datetime,
    *,
    attempts: int | None = None,
    code: int | None = None,
    error: str | None = None,
    next_at: datetime | None = None,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "updated_at": now,
        "last_error": error[:1000] if error else None,
        "next_attempt_at": next_at,
    }
    if attempts is not None:
        values["attempts"] = attempts
    if code is not None:
        values["last_status_code"] = code
    await conn.execute(
        update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id).values(values)
    )


async def disable_subscriber(
    conn: AsyncConnection, name: str, now: datetime, *, reason: str, **detail: Any
) -> None:
    """Persist that ``name`` is disabled (idempotent: a repeat keeps the first time)."""
    values = {
        "name": name,
        "disabled_at": now,
        "disabled_reason": reason,
        "updated_at": now,
        "detail": detail or None,
    }
    ins: Any = (
        pg_insert(webhook_subscriber_state)
        if conn.dialect.name == "postgresql"
        else sqlite_insert(webhook_subscriber_state)
    )
    table = webhook_subscriber_state
    stmt = ins.values(values).on_conflict_do_update(
        index_elements=[table.c.name],
        set_={
            "disabled_at": ins.excluded.disabled_at,
            "disabled_reason": ins.excluded.disabled_reason,
            "updated_at": ins.excluded.updated_at,
            "detail": ins.excluded.detail,
        },
        where=table.c.disabled_at.is_(None),
    )
    await conn.execute(stmt)
