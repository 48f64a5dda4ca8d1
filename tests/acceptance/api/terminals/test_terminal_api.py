"""The terminal API end to end: create (idempotent), events (SSE), terminal details, status,
input, end of day, cancel, and bad input answered with clear problems, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from support.terminal_api import BODY, FINAL, TermApi, parse_sse
from tillbridge.simulators.zvt import SimulatorHandle
from tillbridge.testing import assert_problem

pytestmark = pytest.mark.anyio


async def test_create_is_202_with_the_payment_and_replays(
    api: TermApi, sim: SimulatorHandle
) -> None:
    r = await api.start()
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["connector"] == "lane1" and body["state"] == "created"
    assert body["terminal"]["kind"] == "purchase"
    assert body["events_url"] == f"/v1/payments/{body['id']}/events"
    again = await api.start()
    assert again.status_code == 202 and again.json()["id"] == body["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = await api.start({**BODY, "amount": 999})
    assert_problem(other, 422, "idempotency_key_reused")
    await api.run_jobs()
    assert sim.terminal.charges == 1  # one intent, one charge


async def test_payment_runs_and_its_events_replay_to_a_late_subscriber(
    api: TermApi, sim: SimulatorHandle
) -> None:
    pid = (await api.start()).json()["id"]
    await api.run_jobs()
    r = await api.get(f"/v1/payments/{pid}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert events[-1]["event"] == "end"
    kinds = {e["event"] for e in events}
    assert {"state", "display", "prompt", "receipt_line"} <= kinds
    assert events[-2]["data"]["text"] == "payment captured"
    # Resume after a given event: only what came later.
    mid = events[3]["id"]
    rest = parse_sse(
        (await api.get(f"/v1/payments/{pid}/events", headers={"Last-Event-ID": mid})).text
    )
    assert [e["id"] for e in rest[:-1]] == [e["id"] for e in events[4:-1]]
    details = (await api.get(f"/v1/payments/{pid}/terminal")).json()
    assert details["state"] == "captured"
    t = details["terminal"]
    assert t["masked_pan"] == "672559******1234" and t["trace_number"]
    assert t["customer_receipt"] and t["merchant_receipt"]


async def test_refund_and_decline_through_the_api(api: TermApi) -> None:
    refund = (await api.start({**BODY, "kind": "refund", "amount": 700}, idem="r")).json()
    decline = (await api.start({**BODY, "amount": 2051}, idem="d")).json()
    await api.run_jobs()
    assert (await api.get(f"/v1/payments/{refund['id']}")).json()["state"] == "refunded"
    d = (await api.get(f"/v1/payments/{decline['id']}")).json()
    assert d["state"] == "declined" and "Nicht genehmigt" in d["failure_reason"]


async def test_terminals_list_and_status(api: TermApi) -> None:
    await api.start()
    await api.run_jobs()
    listing = (await api.get("/v1/terminals")).json()["data"]
    assert [t["id"] for t in listing] == ["lane1"]
    t = (await api.get("/v1/terminals/lane1")).json()
    assert t["protocol"] == "zvt" and t["link"].startswith("tcp://127.0.0.1:")
    assert t["online"] is True and t["busy"] is False and t["last_contact_at"]
    assert t["capabilities"]["abort"] is True and t["terminal_tid"] == "52500038"
    assert_problem(await api.get("/v1/terminals/nope"), 404, "unknown_terminal")


async def test_end_of_day_through_the_api(api: TermApi) -> None:
    await api.start()
    await api.run_jobs()
    r = await api.client.post("/v1/terminals/lane1/end-of-day", headers=api.headers())
    assert r.status_code == 202 and r.json()["state"] == "pending"
    await api.run_jobs()
    done = (await api.get(r.headers["Location"])).json()
    assert done["state"] == "succeeded" and done["total"] == 1234 and done["count"] == 1


async def test_input_the_terminal_cannot_take_is_a_clear_422(api: TermApi) -> None:
    r = await api.client.post(
        "/v1/terminals/lane1/input", json={"action": "confirm"}, headers=api.headers()
    )
    body = assert_problem(r, 422, "not_supported")
    assert "on the terminal itself" in body["detail"]
    assert body["details"]["supported"] == ["abort"]
    idle = await api.client.post(
        "/v1/terminals/lane1/input", json={"action": "abort"}, headers=api.headers()
    )
    assert idle.status_code == 202 and idle.json()["recorded"] and not idle.json()["delivered"]
    bad = await api.client.post(
        "/v1/terminals/lane1/input", json={"action": "pin", "text": "1234"}, headers=api.headers()
    )
    assert_problem(bad, 422, "validation_error")


async def test_cancel_route_aborts_a_running_terminal_payment(
    api: TermApi, sim: SimulatorHandle
) -> None:
    import asyncio

    from tillbridge.app.jobs import build_registry
    from tillbridge.queue import Worker

    sim.configure(hold_card=True)
    pid = (await api.start()).json()["id"]
    stop = asyncio.Event()
    task = asyncio.create_task(
        Worker(api.runtime.db, build_registry(api.runtime), poll_interval=0.01).run(stop)
    )
    try:
        await asyncio.wait_for(sim.terminal.card_waiting.wait(), 20)
        r = await api.client.post(f"/v1/payments/{pid}/cancel", headers=api.headers())
        assert r.status_code == 200 and r.json()["state"] == "in_progress"
        done = await api.wait_state(pid, *FINAL)
    finally:
        stop.set()
        await task
    assert done["state"] == "declined" and sim.terminal.charges == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "amount": 0}, "amount"),
        ({**BODY, "amount": 12.5}, "amount"),
        ({**BODY, "amount": "1234"}, "amount"),
        ({**BODY, "currency": "eur"}, "currency"),
        ({**BODY, "kind": "void"}, "kind"),
        ({**BODY, "connector": "lane2"}, "connector"),
        ({k: v for k, v in BODY.items() if k != "reference"}, "reference"),
    ],
)
async def test_bad_bodies_are_422_and_store_nothing(
    api: TermApi, body: dict[str, Any], field: str
) -> None:
    p = assert_problem(await api.start(body), 422, "validation_error")
    assert [e["field"] for e in p["errors"]] == [field]
    assert (await api.get("/v1/payments")).json()["data"] == []


async def test_bad_requests_get_clear_problems(api: TermApi) -> None:
    assert_problem(await api.start(terminal="nope"), 404, "unknown_terminal")
    r = await api.client.post(
        "/v1/terminals/lane1/payments",
        json=BODY,
        headers=api.headers(),  # no Idempotency-Key
    )
    assert_problem(r, 400, "idempotency_key_missing")
    assert_problem(await api.start({**BODY, "currency": "USD"}), 422, "wrong_currency")
    assert_problem(await api.start({**BODY, "amount": 10**13}, idem="big"), 422)
    r = await api.client.post(
        "/v1/terminals/lane1/payments", content=b"{not json", headers=api.headers(idem="j")
    )
    assert_problem(r, 400, "malformed_json")
    anon = await api.client.post("/v1/terminals/lane1/payments", json=BODY)
    assert_problem(anon, 401)
    reader = await api.client.post(
        "/v1/terminals/lane1/payments", json=BODY, headers=api.headers("reader", "x")
    )
    assert_problem(reader, 403)
    # An unknown payment is not_found (issue 13.6), not "not a terminal payment".
    assert_problem(await api.get("/v1/payments/pay_nope/events"), 404, "not_found")
    assert_problem(await api.get("/v1/payments/pay_nope/terminal"), 404, "not_found")
    assert_problem(
        await api.get("/v1/terminals/lane1/end-of-day/eod_nope"), 404, "settlement_not_found"
    )


async def test_a_last_event_id_beyond_any_id_is_422_not_500(api: TermApi) -> None:
    pid = (await api.start()).json()["id"]
    r = await api.get(f"/v1/payments/{pid}/events", headers={"Last-Event-ID": str(2**63)})
    problem = assert_problem(r, 422, "validation_error")
    assert problem["errors"][0] == {
        "in": "header",
        "field": "Last-Event-ID",
        "message": f"Input should be less than or equal to {2**63 - 1}",
        "type": "less_than_equal",
    }
