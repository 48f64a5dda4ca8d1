"""Outgoing event webhooks to a real local receiver, checked with the ``standardwebhooks`` library.

The receiver is a real HTTP server on 127.0.0.1 (port 0); every message it gets is verified by
the reference library, independently of our own signing code. Retry timing is checked by moving
the queue's clock, never by waiting.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from support.webhooks import Bridge, make_config, open_bridge, serve_asgi, set_secret_env
from tillbridge.config import SecretRef, Subscriber
from tillbridge.queue.tables import jobs
from tillbridge.webhooks_out.delivery import SCHEDULE
from tillbridge.webhooks_out.events import DELIVER_JOB
from tillbridge.webhooks_out.signing import generate_secret
from tillbridge.webhooks_out.tables import webhook_deliveries, webhook_events

pytestmark = pytest.mark.anyio


@dataclass
class Receiver:
    """A merchant endpoint: verifies with the reference library, answers as scripted."""

    secret: str
    answers: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    verified: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    rejected: int = 0

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            headers = dict(request.headers)
            try:
                payload = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError:
                self.rejected += 1
                return Response(status_code=400)
            status, extra = self.answers.popleft() if self.answers else (204, {})
            self.verified.append(payload)
            self.headers.append(headers)
            return Response(status_code=status, headers=extra)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@dataclass
class Setup:
    bridge: Bridge
    receivers: dict[str, Receiver]


@pytest.fixture
async def setup(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    set_secret_env(monkeypatch)
    receivers = {"erp": Receiver(generate_secret()), "pos": Receiver(generate_secret())}
    monkeypatch.setenv("TB_TEST_SUB_ERP", receivers["erp"].secret)
    monkeypatch.setenv("TB_TEST_SUB_POS", receivers["pos"].secret)
    async with (
        serve_asgi(receivers["erp"].app()) as erp_url,
        serve_asgi(receivers["pos"].app()) as pos_url,
    ):
        subs = {
            "erp": Subscriber(
                url=f"{erp_url}/hook",  # type: ignore[arg-type]
                secret=SecretRef(env="TB_TEST_SUB_ERP"),
                events=["payment.succeeded", "payment.refunded"],
            ),
            "pos": Subscriber(
                url=f"{pos_url}/hook",  # type: ignore[arg-type]
                secret=SecretRef(env="TB_TEST_SUB_POS"),
                events=["*"],
            ),
        }
        async with open_bridge(db_url, make_config(subscribers=subs)) as b:
            yield Setup(b, receivers)


async def deliveries(b: Bridge) -> list[Any]:
    async with b.db.read() as conn:
        rows = await conn.execute(select(webhook_deliveries).order_by(webhook_deliveries.c.id))
        return [r._mapping for r in rows]


async def test_succeeded_payment_is_delivered_signed_to_matching_subscribers(s: Setup) -> None:
    b = s.bridge
    await b.send_sale("12.34", document_number="1001")
    await b.work()
    erp, pos = s.receivers["erp"], s.receivers["pos"]
    assert erp.rejected == pos.rejected == 0
    assert [m["type"] for m in erp.verified] == ["payment.succeeded"]
    assert [m["type"] for m in pos.verified] == ["payment.succeeded"]
    data = erp.verified[0]["data"]
    assert data["state"] == "captured" and data["amount"] == 1234 and data["currency"] == "EUR"
    assert data["reference"] == "invoice:1001"
    # One message, one id: both subscribers (and every retry) see the same webhook-id.
    assert erp.headers[0]["webhook-id"] == pos.headers[0]["webhook-id"]
    assert erp.headers[0]["webhook-id"].startswith("msg_")
    async with b.db.read() as conn:
        event = (await conn.execute(select(webhook_events))).one()._mapping
    assert event["id"] == erp.headers[0]["webhook-id"]
    assert json.loads(event["body"])["type"] == "payment.succeeded"
    assert [d["status"] for d in await deliveries(b)] == ["succeeded", "succeeded"]


async def test_declined_and_unknown_go_only_to_subscribers_that_want_them(s: Setup) -> None:
    b = s.bridge
    await b.send_sale("12.51", document_number="1")  # declined
    await b.send_sale("12.99", document_number="2")  # unknown, then recovered as succeeded
    await b.work()
    pos_types = sorted(m["type"] for m in s.receivers["pos"].verified)
    assert pos_types == ["payment.declined", "payment.unknown"]
    assert s.receivers["erp"].verified == []
    b.clock.advance(3)  # the recovery's first status query is due
    await b.work()
    assert "payment.succeeded" in [m["type"] for m in s.receivers["erp"].verified]


async def test_failed_attempts_follow_the_schedule_and_honour_retry_after(s: Setup) -> None:
    b = s.bridge
    erp = s.receivers["erp"]
    erp.answers.extend([(503, {}), (429, {"Retry-After": "1200"}), (200, {})])
    await b.send_sale()
    await b.work()
    d = next(x for x in await deliveries(b) if x["subscriber"] == "erp")
    assert d["status"] == "retrying" and d["attempts"] == 1 and d["last_status_code"] == 503
    wait = (d["next_attempt_at"] - b.clock.now).total_seconds()
    assert SCHEDULE[1] * 0.9 <= wait <= SCHEDULE[1] * 1.1  # 5 s with jitter
    b.clock.advance(wait + 0.01)
    await b.work()
    d = next(x for x in await deliveries(b) if x["subscriber"] == "erp")
    assert d["attempts"] == 2 and d["last_status_code"] == 429
    wait = (d["next_attempt_at"] - b.clock.now).total_seconds()
    assert wait >= 1200  # the schedule says ~5 min; the receiver asked for 20 min: honoured
    b.clock.advance(SCHEDULE[2] * 1.1)  # the schedule's delay has passed, Retry-After has not
    await b.work()
    assert len(erp.verified) == 2
    b.clock.advance(wait)
    await b.work()
    d = next(x for x in await deliveries(b) if x["subscriber"] == "erp")
    assert d["status"] == "succeeded" and d["attempts"] == 3
    log = await b.client.get(f"/v1/webhooks/deliveries/{d['id']}", headers=b.admin())
    attempts = log.json()["attempt_log"]
    assert [a["status_code"] for a in attempts] == [503, 429, 200]
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert all(a["duration_ms"] >= 0 for a in attempts) and attempts[0]["error"] == "HTTP 503"


async def test_410_disables_the_subscriber_until_enabled(s: Setup) -> None:
    b = s.bridge
    s.receivers["erp"].answers.append((410, {}))
    await b.send_sale(document_number="1")
    await b.work()
    subs = (await b.client.get("/v1/webhooks/subscribers", headers=b.admin())).json()["data"]
    erp = next(x for x in subs if x["name"] == "erp")
    assert erp["enabled"] is False and "410" in erp["disabled_reason"]
    await b.send_sale(document_number="2")
    await b.work()
    erp_rows = [d for d in await deliveries(b) if d["subscriber"] == "erp"]
    assert [d["status"] for d in erp_rows] == ["skipped", "skipped"]
    assert len(s.receivers["erp"].verified) == 1  # the 410 itself; nothing after it
    r = await b.client.post(
        f"/v1/webhooks/deliveries/{erp_rows[1]['id']}/redeliver", headers=b.admin()
    )
    assert r.status_code == 409 and r.json()["code"] == "subscriber_disabled"
    assert (
        await b.client.post("/v1/webhooks/subscribers/erp/enable", headers=b.admin())
    ).status_code == 200
    r = await b.client.post(
        f"/v1/webhooks/deliveries/{erp_rows[1]['id']}/redeliver", headers=b.admin()
    )
    assert r.status_code == 202, r.text
    await b.work()
    assert len(s.receivers["erp"].verified) == 2
    assert [d["status"] for d in await deliveries(b) if d["subscriber"] == "erp"][1] == "succeeded"


async def test_a_delivery_that_keeps_failing_goes_dead_then_redelivers(s: Setup) -> None:
    b = s.bridge
    erp = s.receivers["erp"]
    erp.answers.extend([(500, {})] * len(SCHEDULE))
    await b.send_sale()
    await b.work()
    for delay in SCHEDULE[1:]:
        b.clock.advance(delay * 1.1 + 1)
        await b.work()
    d = next(x for x in await deliveries(b) if x["subscriber"] == "erp")
    assert d["status"] == "dead" and d["attempts"] == len(SCHEDULE) == 10
    async with b.db.read() as conn:
        job = (await conn.execute(select(jobs).where(jobs.c.id == d["job_id"]))).one()
    assert job.kind == DELIVER_JOB and job.status == "dead"
    listed = await b.client.get("/v1/webhooks/deliveries?status=dead", headers=b.admin())
    assert [x["id"] for x in listed.json()["data"]] == [d["id"]]
    r = await b.client.post(f"/v1/webhooks/deliveries/{d['id']}/redeliver", headers=b.admin())
    assert r.status_code == 202
    again = await b.client.post(f"/v1/webhooks/deliveries/{d['id']}/redeliver", headers=b.admin())
    assert again.status_code == 409 and again.json()["code"] == "delivery_busy"
    b.clock.advance(31)  # the last failure re-opened the breaker: the redelivery is its probe
    await b.work()
    d = next(x for x in await deliveries(b) if x["subscriber"] == "erp")
    assert d["status"] == "succeeded" and d["attempts"] == 11
    ids = {h["webhook-id"] for h in erp.headers}
    assert len(ids) == 1  # every attempt and the redelivery carried the same webhook-id


async def test_a_receiver_that_is_down_is_retried_as_not_sent(s: Setup) -> None:
    b = s.bridge
    subs = b.runtime.integrations.subscriptions
    from dataclasses import replace

    from tillbridge.webhooks_out.delivery import DeliveryService

    down = {k: replace(v, url="http://127.0.0.1:9/hook") for k, v in subs.items()}
    b.runtime.integrations.deliveries.subscriptions = down
    assert isinstance(b.runtime.integrations.deliveries, DeliveryService)
    await b.send_sale()
    await b.work()
    rows = await deliveries(b)
    assert {d["status"] for d in rows} == {"retrying"}
    detail = await b.client.get(f"/v1/webhooks/deliveries/{rows[0]['id']}", headers=b.admin())
    assert detail.json()["attempt_log"][0]["outcome"] == "not_sent"
    b.runtime.integrations.deliveries.subscriptions = subs
    b.clock.advance(timedelta(seconds=SCHEDULE[1] * 1.2).total_seconds())
    await b.work()
    assert {d["status"] for d in await deliveries(b)} == {"succeeded"}


@pytest.fixture
def s(setup: Setup) -> Setup:
    return setup


async def test_exchanges_are_audited_with_card_data_redacted(s: Setup) -> None:
    from tillbridge.audit.tables import audit_log
    from tillbridge.money import Money
    from tillbridge.payments.engine import NewPayment

    b = s.bridge
    async with b.db.write() as conn:
        await b.runtime.payments.create(
            conn,
            NewPayment(Money(500, "EUR"), "SO-1", "fake", {"note": "card 4111111111111111"}),
            actor="test",
            idempotency_key=None,
        )
    await b.work()
    async with b.db.read() as conn:
        rows = await conn.execute(select(audit_log).where(audit_log.c.action == "http.outbound"))
        exchanges = [r._mapping for r in rows]
    assert {e["subject_id"] for e in exchanges} == {"webhook:erp", "webhook:pos"}
    text = json.dumps([e["payload"] for e in exchanges])
    assert "4111111111111111" not in text and "411111******1111" in text
    assert all(e["payload"]["request_headers"]["webhook-signature"] for e in exchanges)
    assert "v1," not in text  # signatures are redacted in the audit log too


async def test_the_delivery_log_pages_with_cursor_and_next_cursor(s: Setup) -> None:
    b = s.bridge
    await b.send_sale("12.34", document_number="2001")
    await b.work()
    ids = sorted((d["id"] for d in await deliveries(b)), reverse=True)
    assert len(ids) == 2  # one per subscriber
    first = (await b.client.get("/v1/webhooks/deliveries?limit=1", headers=b.admin())).json()
    assert [d["id"] for d in first["data"]] == ids[:1] and first["next_cursor"]
    rest = await b.client.get(
        "/v1/webhooks/deliveries",
        params={"limit": 1, "cursor": first["next_cursor"]},
        headers=b.admin(),
    )
    assert [d["id"] for d in rest.json()["data"]] == ids[1:]
    assert rest.json()["next_cursor"] is None
