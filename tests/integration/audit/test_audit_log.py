"""The audit log on real SQLite and real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from tillbridge.audit import AuditEntry, purge, purge_job, query, record
from tillbridge.errors import ConfigError, InvalidCursor
from tillbridge.observability.redaction import MARKER, Redactor
from tillbridge.store.db import Database

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SECRET = "whsec_supersecretvalue"
REDACTOR = Redactor([SECRET])


async def _add(db: Database, n: int = 1, **kw: Any) -> list[int]:
    ids = []
    async with db.write() as conn:
        for _ in range(n):
            args: dict[str, Any] = {"action": "payment.state_changed", "actor": "worker"}
            args.update(kw)
            ids.append(await record(conn, redactor=REDACTOR, **args))
    return ids


async def _count(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM audit_log"))).scalar_one())


async def test_record_and_query(db: Database) -> None:
    async with db.write() as conn:
        first = await record(
            conn,
            action="payment.state_changed",
            actor="api:pos-1",
            subject_type="payment",
            subject_id="pay_1",
            payload={"from": "created", "to": "in_progress"},
            request_id="req-1",
            redactor=REDACTOR,
            occurred_at=NOW,
        )
        second = await record(
            conn,
            action="payment.resolved",
            actor="operator:alice",
            subject_type="payment",
            subject_id="pay_1",
            redactor=REDACTOR,
            occurred_at=NOW + timedelta(seconds=1),
        )
        await record(
            conn,
            action="apikey.created",
            actor="system",
            subject_type="api_key",
            subject_id="pos-1",
            redactor=REDACTOR,
            occurred_at=NOW,
        )
    assert second > first

    async with db.read() as conn:
        history = (await query(conn, subject_type="payment", subject_id="pay_1")).items
        assert [e.id for e in history] == [second, first]  # newest first
        assert history[1] == AuditEntry(
            id=first,
            occurred_at=NOW,
            actor="api:pos-1",
            action="payment.state_changed",
            subject_type="payment",
            subject_id="pay_1",
            payload={"from": "created", "to": "in_progress"},
            request_id="req-1",
        )
        assert history[0].payload is None
        assert history[0].occurred_at.tzinfo is not None
        created = (await query(conn, action="apikey.created")).items
        assert [e.action for e in created] == ["apikey.created"]
        assert len((await query(conn)).items) == 3
        assert len((await query(conn, since=NOW + timedelta(seconds=1))).items) == 1
        assert history[1].to_dict()["occurred_at"] == "2026-11-30T12:00:00+00:00"


async def test_query_pages_with_a_cursor(db: Database) -> None:
    ids = await _add(db, 7, subject_type="payment", subject_id="pay_p")
    async with db.read() as conn:
        page1 = await query(conn, subject_id="pay_p", limit=3)
        page2 = await query(conn, subject_id="pay_p", limit=3, cursor=page1.next_cursor)
        page3 = await query(conn, subject_id="pay_p", limit=3, cursor=page2.next_cursor)
        assert [e.id for e in page1.items + page2.items + page3.items] == sorted(ids, reverse=True)
        assert page3.next_cursor is None  # the last page says so
        assert len((await query(conn, limit=0)).items) == 1  # clamped to at least one
        with pytest.raises(InvalidCursor):
            await query(conn, cursor="not-a-cursor")


async def test_payload_is_redacted_in_the_stored_row(db: Database) -> None:
    payload: dict[str, Any] = {
        "card": {"pan": "4111111111111111", "cvv": "123", "expiry": "12/29"},
        "request": {
            "url": "https://api.example/v2/payments?api_key=k-123",
            "headers": {"Authorization": "Bearer eyJhbGciOi.abc.def", "Accept": "json"},
            "body": '{"number":"4111 1111 1111 1111","note":"' + SECRET + '"}',
        },
        "swipe": ";4111111111111111=29121010000000000000?",
    }
    [entry_id] = await _add(db, payload=payload, subject_type="payment", subject_id="pay_r")
    # Read the row back with raw SQL: what an operator or a backup would see.
    async with db.read() as conn:
        raw = (
            await conn.execute(
                text("SELECT CAST(payload AS TEXT) FROM audit_log WHERE id = :id"), {"id": entry_id}
            )
        ).scalar_one()
    for forbidden in (
        "4111111111111111",
        "4111 1111 1111 1111",
        "eyJhbGciOi",
        "Bearer eyJ",
        SECRET,
        "k-123",
        '"123"',
        "=2912101",
    ):
        assert forbidden not in raw, forbidden
    stored = json.loads(raw)
    assert stored["card"] == {"pan": "411111******1111", "cvv": MARKER, "expiry": "12/29"}
    assert stored["request"]["headers"] == {"Authorization": MARKER, "Accept": "json"}
    assert stored["request"]["url"] == f"https://api.example/v2/payments?api_key={MARKER}"
    assert stored["swipe"] == MARKER
    assert "4111 11** **** 1111" in stored["request"]["body"]
    # the caller's payload is untouched
    assert payload["card"]["pan"] == "4111111111111111"


async def test_payload_is_made_json_safe(db: Database) -> None:
    payload = {
        "amount": Decimal("12.50"),
        "at": NOW,
        "items": ("a", "b"),
        "ratio": float("nan"),
        7: "int key",
    }
    [entry_id] = await _add(db, payload=payload)
    async with db.read() as conn:
        [entry] = (await query(conn)).items
    assert entry.id == entry_id
    assert entry.payload == {
        "amount": "12.50",
        "at": str(NOW),
        "items": ["a", "b"],
        "ratio": "nan",
        "7": "int key",
    }


async def test_oversized_payload_is_stored_as_a_redacted_preview(db: Database) -> None:
    big = {"blob": "x" * 70_000, "card": "4111111111111111"}
    await _add(db, payload=big)
    async with db.read() as conn:
        [entry] = (await query(conn)).items
    assert entry.payload["truncated"] is True
    assert entry.payload["original_chars"] > 70_000
    assert len(entry.payload["preview"]) <= 4096
    assert "4111111111111111" not in json.dumps(entry.payload)


async def test_rollback_of_the_callers_transaction_leaves_no_entry(db: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.write() as conn:
            await record(conn, action="payment.state_changed", actor="worker", redactor=REDACTOR)
            raise Boom
    assert await _count(db) == 0


async def test_timestamps_are_stored_as_utc(db: Database) -> None:
    berlin = timezone(timedelta(hours=1))
    await _add(db, occurred_at=datetime(2026, 11, 30, 13, 0, tzinfo=berlin))
    async with db.read() as conn:
        [entry] = (await query(conn, since=NOW)).items
    assert entry.occurred_at == NOW
    assert entry.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "bad",
    [
        {"action": ""},
        {"actor": " "},
        {"action": "x" * 101},
        {"subject_id": "x" * 201},
        {"occurred_at": datetime(2026, 1, 1)},  # naive on purpose
    ],
)
async def test_invalid_entries_are_refused(db: Database, bad: dict[str, Any]) -> None:
    args: dict[str, Any] = {"action": "payment.state_changed", "actor": "worker", **bad}
    with pytest.raises(ValueError, match="audit"):
        async with db.write() as conn:
            await record(conn, redactor=REDACTOR, **args)
    assert await _count(db) == 0


async def test_purge_removes_only_older_entries_and_counts(db: Database) -> None:
    cutoff = NOW - timedelta(days=10)
    await _add(db, 3, occurred_at=cutoff - timedelta(days=1), subject_id="old")
    await _add(db, 1, occurred_at=cutoff - timedelta(microseconds=1), subject_id="old")
    await _add(db, 1, occurred_at=cutoff, subject_id="edge")  # exactly at the cutoff: kept
    await _add(db, 2, occurred_at=NOW, subject_id="new")
    async with db.write() as conn:
        assert await purge(conn, cutoff) == 4
    async with db.read() as conn:
        left = {e.subject_id for e in (await query(conn)).items}
    assert left == {"edge", "new"}
    async with db.write() as conn:
        assert await purge(conn, cutoff) == 0


async def test_purge_is_bounded_per_call(db: Database) -> None:
    await _add(db, 5, occurred_at=NOW - timedelta(days=30))
    async with db.write() as conn:
        assert await purge(conn, NOW, batch_size=2) == 2
    assert await _count(db) == 3
    with pytest.raises(ValueError, match="batch_size"):
        async with db.write() as conn:
            await purge(conn, NOW, batch_size=0)


async def test_purge_job_applies_the_retention_boundary(db: Database) -> None:
    cutoff = NOW - timedelta(days=400)
    await _add(db, 3, occurred_at=cutoff - timedelta(seconds=1), subject_id="expired")
    await _add(db, 1, occurred_at=cutoff, subject_id="boundary")
    await _add(db, 1, occurred_at=NOW - timedelta(days=399), subject_id="kept")

    assert await purge_job(db, 400, NOW, batch_size=2) == 3

    async with db.read() as conn:
        entries = (await query(conn)).items
    assert {e.subject_id for e in entries} == {"boundary", "kept", None}
    [purged] = [e for e in entries if e.action == "audit.purged"]
    assert purged.actor == "system"
    assert purged.payload == {
        "deleted": 3,
        "cutoff": cutoff.isoformat(),
        "retention_days": 400,
    }
    # nothing left to purge: no work and no further "purged" entry
    assert await purge_job(db, 400, NOW) == 0
    assert await _count(db) == 3


async def test_purge_job_max_batches_bounds_one_run(db: Database) -> None:
    await _add(db, 5, occurred_at=NOW - timedelta(days=500))
    assert await purge_job(db, 400, NOW, batch_size=2, max_batches=1) == 2
    assert await purge_job(db, 400, NOW, batch_size=2) == 3


async def test_purge_job_refuses_a_retention_below_one_day(db: Database) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        await purge_job(db, 0, NOW)
    with pytest.raises(ValueError, match="timezone"):
        await purge_job(db, 1, datetime(2026, 1, 1))  # naive on purpose
