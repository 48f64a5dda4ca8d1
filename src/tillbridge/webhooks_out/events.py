"""Payment state changes to outgoing events, and one delivery per matching subscriber.

:class:`EventPublisher` is a payment listener (see :data:`tillbridge.payments.engine.
PaymentListener`): it runs inside the transaction of every payment state change and, when the
change is one subscribers care about, inserts the event, one delivery row per subscriber whose
``events`` match, and one ``webhooks.deliver`` job per delivery, all in that transaction. So an
event exists if and only if the state change committed (transactional outbox), and nothing is
sent before the change is durable.

Event types: ``payment.succeeded`` (captured), ``payment.declined``, ``payment.unknown`` (the
outcome is being recovered), ``payment.refunded`` (partially or fully). Other states emit nothing.

The body is Standard Webhooks' recommended shape, ``{"type", "timestamp", "data"}``, with the
payment in ``data``; it is stored as the exact bytes every attempt sends. Idempotent: the event's
``source_key`` (payment id, version, type) is unique, so a listener called twice for the same
change creates one event.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.clock import Clock, utcnow
from tillbridge.config import SecretRef
from tillbridge.domain.payments import Payment
from tillbridge.domain.states import PaymentState
from tillbridge.domain.views import iso_utc, payment_dict
from tillbridge.errors import ConfigError
from tillbridge.queue import enqueue
from tillbridge.store.sql import insert_or_ignore
from tillbridge.webhooks_out.tables import (
    PENDING,
    SKIPPED,
    webhook_deliveries,
    webhook_events,
    webhook_subscriber_state,
)

DELIVER_JOB: Final = "webhooks.deliver"

SUCCEEDED_EVENT: Final = "payment.succeeded"
DECLINED_EVENT: Final = "payment.declined"
UNKNOWN_EVENT: Final = "payment.unknown"
REFUNDED_EVENT: Final = "payment.refunded"
EVENT_TYPES: Final = (SUCCEEDED_EVENT, DECLINED_EVENT, UNKNOWN_EVENT, REFUNDED_EVENT)

_STATE_EVENTS: Final = {
    PaymentState.CAPTURED: SUCCEEDED_EVENT,
    PaymentState.DECLINED: DECLINED_EVENT,
    PaymentState.UNKNOWN: UNKNOWN_EVENT,
    PaymentState.PARTIALLY_REFUNDED: REFUNDED_EVENT,
    PaymentState.REFUNDED: REFUNDED_EVENT,
}


@dataclass(frozen=True, slots=True)
class Subscription:
    """A configured subscriber: where to send, with which secret, which events (None = all)."""

    name: str
    url: str
    secret: SecretRef
    events: frozenset[str] | None

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events


def subscriptions_from_config(subscribers: Mapping[str, Any]) -> dict[str, Subscription]:
    """Build subscriptions from ``MerchantConfig.subscribers``; unknown event names are errors."""
    out: dict[str, Subscription] = {}
    for name, sub in subscribers.items():
        events = list(sub.events)
        unknown = sorted(set(events) - set(EVENT_TYPES) - {"*"})
        if unknown:
            raise ConfigError(
                f"subscribers.{name}.events: unknown event(s) {', '.join(unknown)}; "
                f'use {", ".join(EVENT_TYPES)} or "*"'
            )
        wanted = None if "*" in events else frozenset(events)
        out[name] = Subscription(name, str(sub.url), sub.secret, wanted)
    return out


def event_type_for(payment: Payment, previous: PaymentState | None) -> str | None:
    """The event a change to ``payment.state`` emits, or None (a repeat emits nothing)."""
    if previous == payment.state:
        return None
    return _STATE_EVENTS.get(payment.state)


# Built once, executed with a parameter dict (this runs in every payment state change).
_INSERT_EVENT: Final = insert_or_ignore(
    webhook_events, index_elements=[webhook_events.c.source_key], returning=[webhook_events.c.id]
)


def new_event_id() -> str:
    # No dots or spaces: the id is part of the signed content "{id}.{timestamp}.{body}".
    return "msg_" + secrets.token_hex(12)


class EventPublisher:
    """The payment listener that records events and their deliveries; see the module docstring."""

    def __init__(
        self,
        subscriptions: Mapping[str, Subscription],
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.subscriptions = dict(subscriptions)
        self.clock = clock

    async def __call__(
        self, conn: AsyncConnection, payment: Payment, previous: PaymentState | None
    ) -> None:
        event_type = event_type_for(payment, previous)
        if event_type is None:
            return
        matching = [s for s in self.subscriptions.values() if s.wants(event_type)]
        if not matching:
            return
        now = self.clock()
        body = json.dumps(
            {"type": event_type, "timestamp": iso_utc(now), "data": payment_dict(payment)},
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        ).encode()
        event_id = new_event_id()
        values = {
            "id": event_id,
            "type": event_type,
            "subject_type": "payment",
            "subject_id": payment.id,
            "source_key": f"payment:{payment.id}:v{payment.version}:{event_type}",
            "body": body,
            "created_at": now,
        }
        inserted = await conn.execute(_INSERT_EVENT.on(conn), values)
        if inserted.scalar_one_or_none() is None:
            return  # this change was published already
        disabled = await disabled_subscribers(conn, [s.name for s in matching])
        for sub in matching:
            skipped = sub.name in disabled
            result = await conn.execute(
                insert(webhook_deliveries)
                .values(
                    event_id=event_id,
                    subscriber=sub.name,
                    status=SKIPPED if skipped else PENDING,
                    attempts=0,
                    last_error="subscriber disabled" if skipped else None,
                    created_at=now,
                    updated_at=now,
                )
                .returning(webhook_deliveries.c.id)
            )
            delivery_id = int(result.scalar_one())
            if not skipped:
                job_id = await enqueue(conn, DELIVER_JOB, {"delivery_id": delivery_id}, now=now)
                await conn.execute(
                    webhook_deliveries.update()
                    .where(webhook_deliveries.c.id == delivery_id)
                    .values(job_id=job_id)
                )


async def disabled_subscribers(conn: AsyncConnection, names: list[str]) -> set[str]:
    """Which of ``names`` are disabled (a 410, or an operator)."""
    if not names:
        return set()
    rows = await conn.execute(
        select(webhook_subscriber_state.c.name).where(
            webhook_subscriber_state.c.name.in_(names),
            webhook_subscriber_state.c.disabled_at.is_not(None),
        )
    )
    return {r[0] for r in rows}
