"""POST /v1/payments and its Idempotency-Key contract, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from support.api import VALID_BODY, Api, assert_problem
from tillbridge.api.schemas import PaymentCreate
from tillbridge.errors import IdempotencyInProgress
from tillbridge.services import idempotency
from tillbridge.services.idempotency import IdempotencyScope, StoredResponse
from tillbridge.store import payments_repo
from tillbridge.store.tables import idempotency_keys, operations

pytestmark = pytest.mark.anyio


def scope_for(api: Api, key: str, body: dict[str, Any], who: str = "writer") -> IdempotencyScope:
    """The scope the API computes for this request (same public functions)."""
    canonical = PaymentCreate.model_validate(body).model_dump(mode="json")
    return IdempotencyScope(
        api_key_id=api.key_ids[who],
        key=key,
        method="POST",
        path="/v1/payments",
        request_hash=idempotency.request_hash("POST", "/v1/payments", canonical),
    )


async def test_create_answers_201_and_persists_the_payment(api: Api) -> None:
    r = await api.create(idem="order-42")
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in r.headers
    body = r.json()
    assert set(body) == {
        "id", "state", "amount", "currency", "reference", "connector", "metadata",
        "captured_amount", "refunded_amount", "failure_reason", "created_at", "updated_at",
    }  # fmt: skip
    assert body["state"] == "created"
    assert (body["amount"], body["currency"], body["reference"]) == (1234, "EUR", "SO042")
    assert body["metadata"] == VALID_BODY["metadata"]
    assert body["created_at"].endswith("Z")
    datetime.fromisoformat(body["created_at"])
    async with api.runtime.db.read() as conn:
        p = await payments_repo.get_payment(conn, body["id"])
        ops = await payments_repo.list_operations(conn, p.id)
    assert p.amount.minor == 1234 and p.reference == "SO042"
    assert ops[0].idempotency_key == "order-42"
    # The GET shows the same payment the POST answered.
    g = await api.client.get(f"/v1/payments/{body['id']}", headers=api.headers())
    assert g.status_code == 200 and g.json() == body


async def test_replay_returns_identical_body_and_creates_nothing(api: Api) -> None:
    first = await api.create(idem="k-replay")
    second = await api.create(idem="k-replay")
    assert first.status_code == second.status_code == 201
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    assert await api.payments() == 1
    assert await api.idempotency_rows() == 1


async def test_replay_ignores_key_order_and_whitespace(api: Api) -> None:
    first = await api.create(idem="k-canon")
    reordered = dict(reversed(list(VALID_BODY.items())))
    import json

    raw = json.dumps(reordered, indent=4).encode()
    second = await api.client.post(
        "/v1/payments",
        content=raw,
        headers=api.headers(idem="k-canon", **{"Content-Type": "application/json"}),
    )
    assert second.status_code == 201 and second.content == first.content
    assert await api.payments() == 1


async def test_same_key_different_body_is_422_and_creates_nothing(api: Api) -> None:
    assert (await api.create(idem="k-mismatch")).status_code == 201
    r = await api.create({**VALID_BODY, "amount": 999}, idem="k-mismatch")
    assert_problem(r, 422, "idempotency_key_reused")
    assert await api.payments() == 1


async def test_keys_are_scoped_per_api_key(api: Api) -> None:
    a = await api.create(idem="shared")
    b = await api.create(idem="shared", who="writer2")
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert await api.payments() == 2


async def test_missing_or_invalid_idempotency_key_is_400(api: Api) -> None:
    r = await api.client.post("/v1/payments", json=VALID_BODY, headers=api.headers())
    assert_problem(r, 400, "idempotency_key_missing")
    for bad in (b"x" * 256, b"tab\there", "caf\u00e9".encode()):
        h: dict[str, str | bytes] = {**api.headers(), "Idempotency-Key": bad}
        r = await api.client.post("/v1/payments", json=VALID_BODY, headers=h)
        assert_problem(r, 400, "idempotency_key_invalid")
    assert await api.payments() == 0
    assert await api.idempotency_rows() == 0


async def test_unknown_connector_is_422_and_stores_nothing(api: Api) -> None:
    r = await api.create({**VALID_BODY, "connector": "nope"}, idem="k-conn")
    assert_problem(r, 422, "unknown_connector")
    assert await api.payments() == 0
    assert await api.idempotency_rows() == 0
    # Nothing stored means the client may fix the request and reuse the key.
    assert (await api.create(idem="k-conn")).status_code == 201


async def test_failed_work_rolls_back_the_claim(api: Api) -> None:
    """An error inside the transaction (after the key was claimed) leaves no row behind."""
    scope = scope_for(api, "k-rollback", VALID_BODY)

    async def work(_conn: Any) -> StoredResponse:
        raise RuntimeError("crash in the middle of the work")

    with pytest.raises(RuntimeError):
        await idempotency.run_idempotent(
            api.runtime.db, scope, work, now=datetime.now(UTC), ttl_s=60
        )
    assert await api.idempotency_rows() == 0
    assert (await api.create(idem="k-rollback")).status_code == 201


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_concurrent_request_while_first_in_progress_is_409_on_postgres(api: Api) -> None:
    """The first request's transaction is held open (claimed, work not done): a second request
    with the same key gets 409 at once instead of waiting; after the first rolls back, the key
    is free."""
    scope = scope_for(api, "k-busy", VALID_BODY)

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with api.runtime.db.write() as conn:
            claim = await idempotency.begin(conn, scope, now=datetime.now(UTC), ttl_s=3600)
            assert isinstance(claim, idempotency.Claim)
            r = await api.create(idem="k-busy")
            assert_problem(r, 409, "idempotency_key_in_progress")
            # The service says the same to a direct caller.
            async with api.runtime.db.write() as other:
                with pytest.raises(IdempotencyInProgress):
                    await idempotency.begin(other, scope, now=datetime.now(UTC), ttl_s=3600)
            raise Abort
    assert await api.payments() == 0
    assert (await api.create(idem="k-busy")).status_code == 201


async def test_request_racing_a_running_first_gets_its_outcome(api: Api) -> None:
    """Two requests with one key at once: exactly one payment; the other answer is the replay
    (SQLite serialises writers, so the second waits) or 409 (PostgreSQL, while the first runs)."""
    results = await asyncio.gather(*(api.create(idem="k-race") for _ in range(4)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    firsts = [r for r in results if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(firsts) == 1
    for r in results:
        if r.status_code == 201:
            assert r.content == firsts[0].content
        else:
            assert_problem(r, 409, "idempotency_key_in_progress")
    assert await api.payments() == 1


async def test_committed_claim_without_response_is_in_progress_until_its_lock_expires(
    api: Api,
) -> None:
    now = datetime.now(UTC)
    scope = scope_for(api, "k-stuck", VALID_BODY)
    async with api.runtime.db.write() as conn:
        claim = await idempotency.begin(conn, scope, now=now, ttl_s=3600, lock_s=30)
        assert isinstance(claim, idempotency.Claim)
    assert_problem(await api.create(idem="k-stuck"), 409, "idempotency_key_in_progress")
    api.runtime.payments.clock = lambda: now + timedelta(seconds=31)
    r = await api.create(idem="k-stuck")
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert await api.payments() == 1


async def test_expired_keys_are_ignored_reused_and_purged(api: Api) -> None:
    t0 = datetime.now(UTC)
    api.runtime.payments.clock = lambda: t0
    first = await api.create(idem="k-ttl")
    ttl = api.runtime.settings.idempotency_ttl_s
    # Within the TTL: replay.
    api.runtime.payments.clock = lambda: t0 + timedelta(seconds=ttl - 1)
    assert (await api.create(idem="k-ttl")).headers.get("idempotent-replayed") == "true"
    # After it: the key is free again, even for a different body.
    api.runtime.payments.clock = lambda: t0 + timedelta(seconds=ttl + 1)
    again = await api.create({**VALID_BODY, "amount": 5}, idem="k-ttl")
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
    assert await api.payments() == 2
    assert await api.idempotency_rows() == 1
    # Purge deletes only what expired.
    await api.create(idem="k-other")
    async with api.runtime.db.write() as conn:
        purged = await idempotency.purge_expired(conn, now=t0 + timedelta(seconds=2 * ttl + 2))
    assert purged == 2
    assert await api.idempotency_rows() == 0


async def test_stored_response_is_the_one_sent(api: Api) -> None:
    r = await api.create(idem="k-stored")
    async with api.runtime.db.read() as conn:
        row = (await conn.execute(select(idempotency_keys))).mappings().one()
        n_ops = len((await conn.execute(select(operations))).all())
    assert row["status_code"] == 201 and bytes(row["response_body"]) == r.content
    assert row["locked_until"] is None
    assert n_ops == 1
