"""Ids beyond a BIGINT are a 422 from validation, never an OverflowError and a 500 (13.3)."""

from __future__ import annotations

import pytest

from support.api import Api, assert_problem

pytestmark = pytest.mark.anyio

TOO_BIG = 2**63  # 9223372036854775808: one more than a BIGINT holds
LARGEST = 2**63 - 1

ROUTES = [
    ("GET", "/v1/webhooks/inbox/{id}"),
    ("POST", "/v1/webhooks/inbox/{id}/replay"),
    ("GET", "/v1/webhooks/deliveries/{id}"),
    ("POST", "/v1/webhooks/deliveries/{id}/redeliver"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("bad", [TOO_BIG, 10**30, 0, -1])
async def test_an_id_out_of_range_is_422(api: Api, method: str, path: str, bad: int) -> None:
    r = await api.client.request(method, path.format(id=bad), headers=api.headers("admin"))
    problem = assert_problem(r, 422, "validation_error")
    assert problem["errors"][0]["in"] == "path"


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_the_largest_id_is_simply_not_found(api: Api, method: str, path: str) -> None:
    r = await api.client.request(method, path.format(id=LARGEST), headers=api.headers("admin"))
    assert_problem(r, 404)


@pytest.mark.parametrize("listing", ["/v1/webhooks/inbox", "/v1/webhooks/deliveries"])
async def test_the_old_before_id_parameter_is_a_clear_422(api: Api, listing: str) -> None:
    """``?before_id=`` is gone (listings page with ``cursor``): an unknown query parameter is a
    422 that names it, never a 500 and never silently ignored."""
    r = await api.client.get(f"{listing}?before_id={TOO_BIG}", headers=api.headers("admin"))
    (err,) = assert_problem(r, 422, "validation_error")["errors"]
    assert err["in"] == "query" and err["field"] == "before_id"
    assert err["type"] == "extra_forbidden" and "cursor" in err["message"]


async def test_events_after_an_id_out_of_range_is_422(api: Api) -> None:
    pid = (await api.create(idem="k-ev")).json()["id"]
    r = await api.client.get(f"/v1/payments/{pid}/events?after={TOO_BIG}", headers=api.headers())
    assert assert_problem(r, 422, "validation_error")["errors"][0]["field"] == "after"
