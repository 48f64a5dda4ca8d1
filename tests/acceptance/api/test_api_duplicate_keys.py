"""``{"amount":100,"amount":200}`` is refused with a 400, never read as 200 (issue 13.5)."""

from __future__ import annotations

import pytest

from support.api import Api, assert_problem

pytestmark = pytest.mark.anyio

AMBIGUOUS = [
    b'{"amount":100,"amount":200,"currency":"EUR","reference":"SO42","connector":"fake"}',
    b'{"amount":100,"currency":"EUR","reference":"SO42","connector":"fake",'
    b'"metadata":{"a":{"x":1,"x":2}}}',
    b'{"amount":100,"currency":"EUR","currency":"USD","reference":"SO42","connector":"fake"}',
]


@pytest.mark.parametrize("body", AMBIGUOUS, ids=["amount", "nested-metadata", "currency"])
async def test_a_member_named_twice_is_400_and_nothing_is_stored(api: Api, body: bytes) -> None:
    r = await api.client.post(
        "/v1/payments",
        content=body,
        headers=api.headers("writer", "k-dup", **{"Content-Type": "application/json"}),
    )
    problem = assert_problem(r, 400, "duplicate_json_key")
    assert "twice" in problem["detail"]
    assert await api.payments() == 0 and await api.idempotency_rows() == 0


async def test_nan_is_not_json(api: Api) -> None:
    body = (
        b'{"amount":100,"currency":"EUR","reference":"SO42","connector":"fake",'
        b'"metadata":{"x":NaN}}'
    )
    r = await api.client.post("/v1/payments", content=body, headers=api.headers("writer", "k-nan"))
    assert_problem(r, 400, "malformed_json")


async def test_refunds_refuse_duplicates_too(api: Api) -> None:
    pid = (await api.create(idem="k-p")).json()["id"]
    r = await api.client.post(
        f"/v1/payments/{pid}/refunds",
        content=b'{"amount":100,"amount":1}',
        headers=api.headers("writer", "k-r"),
    )
    assert_problem(r, 400, "duplicate_json_key")
