"""Webhook intake: verified, stored durably, deduped, and every bad input answered with a 4xx."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import pytest
from sqlalchemy import select

from support.webhooks import ACCOUNT, XENTRAL_KEY, Bridge
from tillbridge.audit.tables import audit_log
from tillbridge.inbound.tables import webhook_inbox
from tillbridge.money import Money
from tillbridge.queue.tables import jobs
from tillbridge.simulators.xentral import card_payment_body, envelope, sign_delivery
from tillbridge.store.tables import payments
from tillbridge.testing import assert_problem

pytestmark = pytest.mark.anyio


def sale(amount: str = "12.34", **kw: Any) -> dict[str, Any]:
    return envelope(card_payment_body(Money.of(amount, "EUR"), **kw))


async def test_a_signed_delivery_is_stored_with_its_job_before_the_200(bridge: Bridge) -> None:
    r = await bridge.send_sale()
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "accepted" and isinstance(answer["id"], int)
    async with bridge.db.read() as conn:
        row = (await conn.execute(select(webhook_inbox))).one()._mapping
        job = (await conn.execute(select(jobs))).one()._mapping
    assert row["id"] == answer["id"] and row["status"] == "queued"
    assert row["verified"] is True and row["remote_addr"] == "10.1.2.3"
    assert row["verification"]["scheme"] == "xentral"
    assert row["verification"]["secret_index"] == 1  # the new key of the rotation pair
    assert json.loads(row["raw_body"])["type"] == "com.xentral.pos.cardPaymentCaptured.v1"
    assert row["headers"]["xentral-signature"] == "[redacted]"  # the signature is never kept
    assert job["kind"] == "webhook.process" and job["payload"] == {"inbox_id": answer["id"]}
    assert await bridge.count(payments) == 0  # nothing happens before the worker runs


async def test_old_key_of_a_rotation_still_verifies(bridge: Bridge) -> None:
    d = bridge.signed(sale(), key="an-older-key-being-rotated-out")[0]
    r = await bridge.post(d)
    assert r.status_code == 200, r.text
    async with bridge.db.read() as conn:
        v = (await conn.execute(select(webhook_inbox.c.verification))).scalar_one()
    assert v["secret_index"] == 0


async def test_a_repeat_gets_the_same_answer_and_no_second_effect(bridge: Bridge) -> None:
    first, again = bridge.signed(sale(), duplicate=True)  # same bytes, re-signed a second later
    r1 = await bridge.post(first)
    r2 = await bridge.post(again)
    r3 = await bridge.post(first)  # the very same request replayed inside the window
    assert r1.status_code == r2.status_code == r3.status_code == 200
    assert r1.content == r2.content == r3.content
    assert await bridge.count(webhook_inbox) == 1 and await bridge.count(jobs) == 1
    await bridge.work()
    assert await bridge.count(payments) == 1


async def test_concurrent_duplicates_store_one_row(bridge: Bridge) -> None:
    d = bridge.signed(sale(), duplicate=True)
    answers = await asyncio.gather(*(bridge.post(d[i % 2]) for i in range(8)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert await bridge.count(webhook_inbox) == 1 and await bridge.count(jobs) == 1


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"bad_signature": True}, "no_matching_signature"),
        ({"stale": True}, "timestamp_too_old"),
        ({"timestamp_offset": 301}, "timestamp_in_future"),
        ({"timestamp_offset": -301}, "timestamp_too_old"),
    ],
)
async def test_bad_signature_and_timestamps_are_401_with_evidence_audited(
    bridge: Bridge, knobs: dict[str, Any], reason: str
) -> None:
    r = await bridge.post(bridge.signed(sale(), **knobs)[0])
    body = assert_problem(r, 401, "bad_signature")
    assert body["detail"] == "webhook signature verification failed"  # generic, whatever failed
    assert reason not in r.text
    assert await bridge.count(webhook_inbox) == 0
    async with bridge.db.read() as conn:
        entry = (await conn.execute(select(audit_log))).one()._mapping
    assert entry["action"] == "webhook.rejected" and entry["subject_id"] == f"xentral/{ACCOUNT}"
    assert entry["payload"]["reason"] == reason
    assert entry["payload"]["remote_addr"] == "10.1.2.3"
    assert XENTRAL_KEY not in json.dumps(entry["payload"])


async def test_timestamps_just_inside_the_window_verify(bridge: Bridge) -> None:
    for offset in (-299, 299):
        payload = sale(document_number=f"doc{offset}")
        r = await bridge.post(bridge.signed(payload, timestamp_offset=offset)[0])
        assert r.status_code == 200, (offset, r.text)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"xentral-signature": "zz" * 32},
        {"xentral-signature": "ab"},
        {"xentral-request-timestamp": "yesterday"},
        {"xentral-request-timestamp": ""},
        {"xentral-signature": ""},
    ],
)
async def test_missing_or_malformed_signature_headers_are_401(
    bridge: Bridge, headers: dict[str, str]
) -> None:
    d = bridge.signed(sale())[0]
    sent = (
        {k: v for k, v in d.headers.items() if not k.startswith("xentral-")}
        if not headers
        else {
            **d.headers,
            **headers,
        }
    )
    r = await bridge.client.post(f"/webhooks/xentral/{ACCOUNT}", content=d.body, headers=sent)
    assert_problem(r, 401, "bad_signature")
    assert await bridge.count(webhook_inbox) == 0


async def test_unknown_source_or_account_is_404(bridge: Bridge) -> None:
    d = bridge.signed(sale())[0]
    for path in ("/webhooks/stripe/xpos", "/webhooks/xentral/nobody"):
        r = await bridge.client.post(path, content=d.body, headers=d.headers)
        assert_problem(r, 404, "unknown_webhook_endpoint")
    assert await bridge.count(webhook_inbox) == 0


async def test_empty_oversized_and_wrong_media_type(bridge: Bridge) -> None:
    empty = sign_delivery(b"", key=XENTRAL_KEY, timestamp=int(bridge.clock.wall()))
    assert_problem(await bridge.post(empty), 400, "empty_body")
    limit = bridge.runtime.integrations.intake.settings.max_body_bytes
    big = sign_delivery(
        json.dumps({"pad": "x" * limit}).encode(),
        key=XENTRAL_KEY,
        timestamp=int(bridge.clock.wall()),
    )
    assert_problem(await bridge.post(big), 413, "payload_too_large")
    d = bridge.signed(sale())[0]
    assert_problem(await bridge.post(d, **{"content-type": "text/plain"}), 415)
    assert await bridge.count(webhook_inbox) == 0


async def test_oversized_chunked_body_is_413_without_content_length(bridge: Bridge) -> None:
    limit = bridge.runtime.integrations.intake.settings.max_body_bytes

    async def chunks() -> Any:
        for _ in range(limit // 1000 + 2):
            yield b"x" * 1000

    r = await bridge.client.post(
        f"/webhooks/xentral/{ACCOUNT}",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert_problem(r, 413)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2, 3]", b'"a string"', b"\xff\xfe{}", b"null"])
async def test_signed_body_that_is_not_a_json_object_is_400_and_not_stored(
    bridge: Bridge, raw: bytes
) -> None:
    d = sign_delivery(raw, key=XENTRAL_KEY, timestamp=int(bridge.clock.wall()))
    assert_problem(await bridge.post(d), 400, "malformed_body")
    assert await bridge.count(webhook_inbox) == 0


async def test_wrongly_typed_fields_are_stored_then_marked_invalid(bridge: Bridge) -> None:
    body = sale()
    body["body"]["totalAmount"] = ["12.34"]  # a list where a number belongs
    r = await bridge.post(bridge.signed(body)[0])
    assert r.status_code == 200  # the sender cannot fix it by resending: acknowledge, keep it
    await bridge.work()
    async with bridge.db.read() as conn:
        row = (await conn.execute(select(webhook_inbox))).one()._mapping
    assert row["status"] == "invalid" and "totalAmount" in row["error"]
    assert await bridge.count(payments) == 0


async def test_an_address_that_keeps_failing_gets_429_then_recovers(bridge: Bridge) -> None:
    bad = bridge.signed(sale(), bad_signature=True)[0]
    for _ in range(3):
        assert_problem(await bridge.post(bad), 401)
    r = await bridge.post(bad)
    assert_problem(r, 429, "too_many_failures")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    async with bridge.db.read() as conn:
        audited = (await conn.execute(select(audit_log.c.id))).all()
    assert len(audited) == 3  # throttled failures are not audited one by one
    # A delivery that verifies is accepted even from a throttled address.
    assert (await bridge.send_sale()).status_code == 200
    bridge.clock.advance(61)
    assert_problem(await bridge.post(bridge.signed(sale(), bad_signature=True)[0]), 401)


async def test_answer_is_committed_before_it_is_sent(bridge: Bridge) -> None:
    """A 200 implies a committed row: a second database connection sees it at once."""
    r = await bridge.send_sale()
    from tillbridge.store.db import Database

    other = Database(bridge.db.url)
    try:
        async with other.read() as conn:
            ids = (await conn.execute(select(webhook_inbox.c.id))).scalars().all()
    finally:
        await other.dispose()
    assert ids == [r.json()["id"]]


async def test_store_unavailable_is_503_and_nothing_is_claimed(bridge: Bridge) -> None:
    from tillbridge.errors import StoreUnavailable

    intake = bridge.runtime.integrations.intake

    class DownDb:
        url = bridge.db.url
        is_sqlite = False

        def write(self) -> Any:
            raise StoreUnavailable(detail="test: database down")

    real, intake.writer.db = intake.writer.db, DownDb()  # type: ignore[assignment]
    try:
        with anyio.fail_after(10):
            r = await bridge.send_sale()
    finally:
        intake.writer.db = real
    assert_problem(r, 503, "store_unavailable")
    assert "retry-after" in r.headers


async def test_concurrent_deliveries_share_commits_and_keep_their_own_answers(
    bridge: Bridge,
) -> None:
    pairs = [bridge.signed(sale(document_number=str(i)), duplicate=True) for i in range(40)]
    sends = [bridge.post(d) for pair in pairs for d in pair]
    answers = await asyncio.gather(*sends)
    assert {r.status_code for r in answers} == {200}
    ids = [r.json()["id"] for r in answers]
    assert all(ids[2 * i] == ids[2 * i + 1] for i in range(40))  # each copy, its original's id
    assert len(set(ids)) == 40
    assert await bridge.count(webhook_inbox) == 40 and await bridge.count(jobs) == 40
    await bridge.work()
    assert await bridge.count(payments) == 40


async def test_a_signed_body_naming_a_member_twice_is_400_and_not_stored(bridge: Bridge) -> None:
    body = json.dumps(sale("1.00")).encode()
    ambiguous = body.replace(b'"totalAmount":', b'"totalAmount":999.0,"totalAmount":', 1)
    assert ambiguous != body
    r = await bridge.post(bridge.signed(ambiguous)[0])
    problem = assert_problem(r, 400, "malformed_body")
    assert "totalAmount" in problem["detail"] and "twice" in problem["detail"]
    assert await bridge.count(webhook_inbox) == 0
