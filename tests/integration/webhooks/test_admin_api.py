"""The admin routes of the inbox and the delivery log, and ``/v1/providers/health``."""

from __future__ import annotations

import pytest
from wh_support import Bridge

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
