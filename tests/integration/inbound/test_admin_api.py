"""The admin routes of the inbox and the delivery log, and ``/v1/providers/health``."""

from __future__ import annotations

import base64
import json

import pytest

from support.webhooks import Bridge

pytestmark = pytest.mark.anyio


async def test_inbox_routes_need_the_admin_scope(bridge: Bridge) -> None:
    for path in ("/v1/webhooks/inbox", "/v1/webhooks/inbox/1", "/v1/webhooks/deliveries"):
        assert (await bridge.client.get(path)).status_code == 401
        assert (await bridge.client.get(path, headers=bridge.reader())).status_code == 403
    r = await bridge.client.post("/v1/webhooks/inbox/1/replay", headers=bridge.reader())
    assert r.status_code == 403


async def test_list_show_and_replay_an_inbox_entry(bridge: Bridge) -> None:
    accepted = (await bridge.send_sale(document_number="4711")).json()
    listing = await bridge.client.get("/v1/webhooks/inbox", headers=bridge.admin())
    assert listing.status_code == 200
    (item,) = listing.json()["data"]
    assert item["id"] == accepted["id"] and item["status"] == "queued"
    assert "body" not in item  # listings stay small
    busy = await bridge.client.post(
        f"/v1/webhooks/inbox/{item['id']}/replay", headers=bridge.admin()
    )
    assert busy.status_code == 409 and busy.json()["code"] == "inbox_busy"
    await bridge.work()
    shown = (
        await bridge.client.get(f"/v1/webhooks/inbox/{item['id']}", headers=bridge.admin())
    ).json()
    assert shown["status"] == "processed" and '"documentNumber":"4711"' in shown["body"]
    assert shown["job"]["status"] == "succeeded" and shown["job"]["errors"] == []
    assert shown["headers"]["xentral-signature"] == "[redacted]"
    assert shown["verification"]["scheme"] == "xentral"
    r = await bridge.client.post(f"/v1/webhooks/inbox/{item['id']}/replay", headers=bridge.admin())
    assert r.status_code == 202 and r.json()["status"] == "queued"


async def test_unknown_ids_and_bad_filters(bridge: Bridge) -> None:
    h = bridge.admin()
    r = await bridge.client.get("/v1/webhooks/inbox/999", headers=h)
    assert r.status_code == 404 and r.json()["code"] == "inbox_not_found"
    r = await bridge.client.post("/v1/webhooks/inbox/999/replay", headers=h)
    assert r.status_code == 404
    r = await bridge.client.get("/v1/webhooks/deliveries/999", headers=h)
    assert r.status_code == 404 and r.json()["code"] == "delivery_not_found"
    r = await bridge.client.get("/v1/webhooks/inbox?status=nonsense", headers=h)
    assert r.status_code == 422
    r = await bridge.client.get("/v1/webhooks/inbox/abc", headers=h)
    assert r.status_code == 422
    r = await bridge.client.post("/v1/webhooks/subscribers/nobody/enable", headers=h)
    assert r.status_code == 404 and r.json()["code"] == "subscriber_not_found"


async def test_providers_health_is_readable_with_payments_read(bridge: Bridge) -> None:
    assert (await bridge.client.get("/v1/providers/health")).status_code == 401
    r = await bridge.client.get("/v1/providers/health", headers=bridge.reader())
    assert r.status_code == 200 and r.json() == {"status": "ok", "breakers": []}
    bridge.xentral.add_invoice("40001234")
    await bridge.send_sale(document_number="40001234")
    await bridge.work()
    r = await bridge.client.get("/v1/providers/health", headers=bridge.admin())
    (breaker,) = r.json()["breakers"]
    assert breaker["account"] == "xentral:xpos" and breaker["state"] == "closed"


async def test_openapi_documents_the_new_routes(bridge: Bridge) -> None:
    paths = (await bridge.client.get("/openapi.json")).json()["paths"]
    for p in (
        "/webhooks/{source}/{account}",
        "/v1/webhooks/inbox",
        "/v1/webhooks/inbox/{inbox_id}/replay",
        "/v1/webhooks/deliveries/{delivery_id}/redeliver",
        "/v1/providers/health",
    ):
        assert p in paths, p


async def test_wrong_method_on_the_intake_is_405(bridge: Bridge) -> None:
    r = await bridge.client.get("/webhooks/xentral/xpos")
    assert r.status_code == 405 and "POST" in r.headers["allow"]


def _cursor_of(values: list[object]) -> str:
    """A cursor as the bridge spells one, with any values (to forge bad ones)."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


async def test_the_inbox_pages_with_cursor_and_next_cursor(bridge: Bridge) -> None:
    ids = [(await bridge.send_sale(document_number=str(n))).json()["id"] for n in range(3)]
    h = bridge.admin()
    first = (await bridge.client.get("/v1/webhooks/inbox?limit=2", headers=h)).json()
    assert [i["id"] for i in first["data"]] == [ids[2], ids[1]]
    assert first["next_cursor"] and "next_before_id" not in first
    rest = await bridge.client.get(
        "/v1/webhooks/inbox", params={"limit": 2, "cursor": first["next_cursor"]}, headers=h
    )
    assert rest.status_code == 200
    assert [i["id"] for i in rest.json()["data"]] == [ids[0]]
    assert rest.json()["next_cursor"] is None  # the last page says so
    exact = (await bridge.client.get("/v1/webhooks/inbox?limit=3", headers=h)).json()
    assert len(exact["data"]) == 3 and exact["next_cursor"] is None  # no empty extra page


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",  # not base64 of JSON
        "",  # empty
        "A" * 501,  # longer than any cursor the bridge makes
        _cursor_of([2**63]),  # beyond BIGINT: the SQLite driver used to raise OverflowError
        _cursor_of([-(2**63) - 1]),
        _cursor_of([True]),  # a bool is not an id
        _cursor_of([1.5]),
        _cursor_of(["12"]),
        _cursor_of([1, 2]),  # wrong shape
        _cursor_of({"id": 1}),  # type: ignore[arg-type]
    ],
)
async def test_a_bad_cursor_is_422_invalid_cursor_on_every_listing(
    bridge: Bridge, cursor: str
) -> None:
    for path in ("/v1/webhooks/inbox", "/v1/webhooks/deliveries"):
        r = await bridge.client.get(path, params={"cursor": cursor}, headers=bridge.admin())
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "invalid_cursor"


async def test_the_largest_id_is_a_valid_cursor(bridge: Bridge) -> None:
    await bridge.send_sale(document_number="1")
    largest = {"cursor": _cursor_of([2**63 - 1])}
    h = bridge.admin()
    inbox = await bridge.client.get("/v1/webhooks/inbox", params=largest, headers=h)
    assert inbox.status_code == 200 and len(inbox.json()["data"]) == 1  # every id is below it
    out = await bridge.client.get("/v1/webhooks/deliveries", params=largest, headers=h)
    assert out.status_code == 200 and out.json()["data"] == []  # no subscribers here
