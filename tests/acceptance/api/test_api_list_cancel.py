"""GET /v1/payments (filters, pagination), GET /v1/payments/{id}, POST .../cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support.api import VALID_BODY, Api, assert_problem
from tillbridge.store import payments_repo

pytestmark = pytest.mark.anyio

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def seed(api: Api, n: int) -> list[dict[str, Any]]:
    """``n`` payments one minute apart from T0; even ones reference A, odd ones B."""
    made = []
    for i in range(n):
        at = T0 + timedelta(minutes=i)
        api.runtime.payments.clock = lambda at=at: at
        body = {**VALID_BODY, "amount": 100 + i, "reference": "A" if i % 2 == 0 else "B"}
        r = await api.create(body, idem=f"seed-{i}")
        assert r.status_code == 201, r.text
        made.append(r.json())
    return made


async def all_pages(api: Api, query: str) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        q = query + (f"&cursor={cursor}" if cursor else "")
        r = await api.client.get(f"/v1/payments?{q}", headers=api.headers("reader"))
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["data"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 50


async def test_pagination_with_filters_covers_every_match_once(api: Api) -> None:
    made = await seed(api, 25)
    items, pages = await all_pages(api, "reference=A&limit=5")
    expected = [p["id"] for p in reversed(made) if p["reference"] == "A"]  # newest first
    assert [p["id"] for p in items] == expected and len(expected) == 13
    assert pages == 3

    frm = (T0 + timedelta(minutes=5)).isoformat()
    to = (T0 + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%S")  # no offset: read as UTC
    items, pages = await all_pages(
        api, f"created_from={frm.replace('+', '%2B')}&created_to={to}&limit=4"
    )
    assert [p["amount"] for p in items] == list(range(114, 104, -1))
    assert pages == 3

    everything, _ = await all_pages(api, "limit=100")
    assert len(everything) == 25 and len({p["id"] for p in everything}) == 25
    default_page = (await api.client.get("/v1/payments", headers=api.headers())).json()
    assert len(default_page["data"]) == 20 and default_page["next_cursor"]


async def test_state_filter_and_cancel_flow(api: Api) -> None:
    made = await seed(api, 3)
    target = made[1]["id"]
    r = await api.client.post(f"/v1/payments/{target}/cancel", headers=api.headers())
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "canceled" and r.json()["failure_reason"]
    again = await api.client.post(f"/v1/payments/{target}/cancel", headers=api.headers())
    assert again.status_code == 200 and again.json()["state"] == "canceled"  # a repeat is harmless
    got = await api.client.get(f"/v1/payments/{target}", headers=api.headers("reader"))
    assert got.json()["state"] == "canceled"

    canceled, _ = await all_pages(api, "state=canceled")
    assert [p["id"] for p in canceled] == [target]
    created, _ = await all_pages(api, "state=created")
    assert {p["id"] for p in created} == {made[0]["id"], made[2]["id"]}


async def test_cancel_after_money_moved_is_409(api: Api) -> None:
    pid = (await api.create(idem="k-captured")).json()["id"]
    async with api.runtime.db.read() as conn:
        [op] = await payments_repo.list_operations(conn, pid)
    await api.runtime.payments.execute(pid, op.id)  # the worker's job, run here
    got = await api.client.get(f"/v1/payments/{pid}", headers=api.headers())
    assert got.json()["state"] == "captured" and got.json()["captured_amount"] == 1234
    r = await api.client.post(f"/v1/payments/{pid}/cancel", headers=api.headers())
    problem = assert_problem(r, 409, "not_cancelable")
    assert problem["details"]["current"] == "captured"


async def test_unknown_payment_is_404_and_scopes_apply(api: Api) -> None:
    assert_problem(
        await api.client.get("/v1/payments/pay_nope", headers=api.headers()), 404, "not_found"
    )
    r = await api.client.post("/v1/payments/pay_nope/cancel", headers=api.headers())
    assert_problem(r, 404, "not_found")
    r = await api.client.post("/v1/payments/pay_nope/cancel", headers=api.headers("reader"))
    assert_problem(r, 403, "forbidden")
    r = await api.client.get("/v1/payments/" + "x" * 101, headers=api.headers())
    assert_problem(r, 422, "validation_error")
