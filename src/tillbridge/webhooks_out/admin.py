"""Operator functions for outgoing webhooks: deliveries, their attempts, redelivery, subscribers.

Used by ``tillbridge webhooks ...`` and the admin API alike. Every function opens its own short
transaction on the given :class:`Database`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from tillbridge.clock import utcnow
from tillbridge.errors import (
    DeliveryBusy,
    DeliveryNotFound,
    SubscriberDisabled,
    SubscriberNotFound,
    ValidationError,
)
from tillbridge.queue import enqueue
from tillbridge.queue.tables import ACTIVE, jobs
from tillbridge.store.db import Database
from tillbridge.store.keyset import Keyset, Page
from tillbridge.webhooks_out.events import DELIVER_JOB, Subscription, disabled_subscribers
from tillbridge.webhooks_out.tables import (
    DELIVERY_STATUSES,
    PENDING,
    webhook_deliveries,
    webhook_delivery_attempts,
    webhook_events,
    webhook_subscriber_state,
)

MAX_PAGE = 500
_PAGES = Keyset(webhook_deliveries.c.id)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _delivery(m: Any) -> dict[str, Any]:
    return {
        "id": int(m["id"]),
        "event_id": m["event_id"],
        "event_type": m["type"],
        "subscriber": m["subscriber"],
        "status": m["status"],
        "attempts": int(m["attempts"]),
        "last_status_code": m["last_status_code"],
        "last_error": m["last_error"],
        "next_attempt_at": _iso(m["next_attempt_at"]),
        "created_at": _iso(m["created_at"]),
        "updated_at": _iso(m["updated_at"]),
    }


def _joined() -> Any:
    return select(webhook_deliveries, webhook_events.c.type).join(
        webhook_events, webhook_events.c.id == webhook_deliveries.c.event_id
    )


async def list_deliveries(
    db: Database,
    *,
    status: str | None = None,
    subscriber: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[dict[str, Any]]:
    """Deliveries newest first, filtered; pass ``next_cursor`` as ``cursor`` for the next page.

    Raises :class:`~tillbridge.errors.ValidationError` for an unknown status or a limit out of
    range, :class:`~tillbridge.errors.InvalidCursor` for a cursor that is not one of ours.
    """
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationError(f"unknown status {status!r}; one of {', '.join(DELIVERY_STATUSES)}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE}")
    stmt = _joined()
    if status is not None:
        stmt = stmt.where(webhook_deliveries.c.status == status)
    if subscriber is not None:
        stmt = stmt.where(webhook_deliveries.c.subscriber == subscriber)
    stmt = _PAGES.paginate(stmt, cursor, limit)
    async with db.read() as conn:
        rows = list(await conn.execute(stmt))
    return _PAGES.page(rows, limit).map(lambda r: _delivery(r._mapping))


async def get_delivery(db: Database, delivery_id: int) -> dict[str, Any]:
    """One delivery with its event body and every attempt (oldest first)."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                _joined()
                .add_columns(webhook_events.c.body)
                .where(webhook_deliveries.c.id == delivery_id)
            )
        ).first()
        if row is None:
            raise DeliveryNotFound(f"delivery {delivery_id} not found", delivery_id=delivery_id)
        attempts = await conn.execute(
            select(webhook_delivery_attempts)
            .where(webhook_delivery_attempts.c.delivery_id == delivery_id)
            .order_by(webhook_delivery_attempts.c.id)
        )
        out = _delivery(row._mapping)
        out["body"] = bytes(row._mapping["body"]).decode("utf-8", errors="replace")
        out["attempt_log"] = [
            {
                "attempt": int(a.attempt),
                "at": _iso(a.at),
                "status_code": a.status_code,
                "duration_ms": a.duration_ms,
                "outcome": a.outcome,
                "error": a.error,
            }
            for a in attempts
        ]
    return out


async def redeliver(db: Database, delivery_id: int, *, now: datetime | None = None) -> int:
    """Queue a fresh delivery attempt (a new job, the schedule starts over); the job id.

    Refused while a job of this delivery is still queued or running (:class:`DeliveryBusy`) and
    while the subscriber is disabled (:class:`SubscriberDisabled`). The message keeps its
    ``webhook-id``, so a receiver that already has it can drop the copy.
    """
    stamp = now or utcnow()
    async with db.write() as conn:
        row = (
            await conn.execute(
                select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
            )
        ).first()
        if row is None:
            raise DeliveryNotFound(f"delivery {delivery_id} not found", delivery_id=delivery_id)
        d = row._mapping
        if await disabled_subscribers(conn, [d["subscriber"]]):
            raise SubscriberDisabled(
                f"subscriber {d['subscriber']} is disabled: "
                f"`tillbridge webhooks enable {d['subscriber']}` first",
                subscriber=d["subscriber"],
            )
        if d["job_id"] is not None:
            status = (
                await conn.execute(select(jobs.c.status).where(jobs.c.id == d["job_id"]))
            ).scalar_one_or_none()
            if status in ACTIVE:
                raise DeliveryBusy(
                    f"delivery {delivery_id} is already queued ({status})", status=status
                )
        job_id = await enqueue(conn, DELIVER_JOB, {"delivery_id": delivery_id}, now=stamp)
        await conn.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery_id)
            .values(status=PENDING, job_id=job_id, next_attempt_at=None, updated_at=stamp)
        )
    return job_id


@dataclass(frozen=True, slots=True)
class SubscriberView:
    name: str
    url: str
    events: list[str]
    disabled_at: datetime | None
    disabled_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "events": self.events,
            "enabled": self.disabled_at is None,
            "disabled_at": _iso(self.disabled_at),
            "disabled_reason": self.disabled_reason,
        }


async def list_subscribers(
    db: Database, subscriptions: Mapping[str, Subscription]
) -> list[SubscriberView]:
    """Configured subscribers with their persisted state (never their secrets)."""
    async with db.read() as conn:
        rows = await conn.execute(select(webhook_subscriber_state))
        state = {r.name: r for r in rows}
    out = []
    for name in sorted(subscriptions):
        sub, st = subscriptions[name], state.get(name)
        out.append(
            SubscriberView(
                name=name,
                url=sub.url,
                events=sorted(sub.events) if sub.events is not None else ["*"],
                disabled_at=st.disabled_at if st is not None else None,
                disabled_reason=st.disabled_reason if st is not None else None,
            )
        )
    return out


async def enable_subscriber(
    db: Database, subscriptions: Mapping[str, Subscription], name: str
) -> None:
    """Enable a disabled subscriber again (a no-op when it is enabled). Skipped deliveries stay
    skipped: redeliver the ones that matter (``tillbridge webhooks deliveries --status skipped``).
    """
    if name not in subscriptions:
        raise SubscriberNotFound(f"no subscriber named {name!r}", subscriber=name)
    async with db.write() as conn:
        await conn.execute(
            update(webhook_subscriber_state)
            .where(webhook_subscriber_state.c.name == name)
            .values(disabled_at=None, disabled_reason=None, updated_at=utcnow())
        )
