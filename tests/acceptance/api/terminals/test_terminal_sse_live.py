"""The event stream live, over a real HTTP server: the client sees the terminal asking for the
card *while* the payment waits for it (the test inserts the card only after that event
arrived), then the result, then the end of the stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest
import uvicorn

from support.terminal_api import BODY, lane1_runtime, make_keys
from tillbridge.api import create_app
from tillbridge.app.jobs import build_registry
from tillbridge.queue import Worker
from tillbridge.simulators.zvt import SimulatorHandle

pytestmark = pytest.mark.anyio

INSERT_CARD = 0x0A


async def test_live_event_stream_over_a_real_server(sqlite_url: str, sim: SimulatorHandle) -> None:
    sim.configure(hold_card=True)
    rt = lane1_runtime(sqlite_url, sim)
    keys = await make_keys(rt.db)
    config = uvicorn.Config(
        create_app(rt), host="127.0.0.1", port=0, log_config=None, access_log=False,
        lifespan="off",
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(rt.db, build_registry(rt), poll_interval=0.01).run(stop))
    seen: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(20):
            while not server.started:
                await asyncio.sleep(0.01)  # waiting for a condition: the socket is bound
        port = server.servers[0].sockets[0].getsockname()[1]
        auth = {"Authorization": f"Bearer {keys['writer']}"}
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            r = await client.post(
                "/v1/terminals/lane1/payments", json=BODY, headers={**auth, "Idempotency-Key": "l"}
            )
            pid = r.json()["id"]
            async with client.stream("GET", f"/v1/payments/{pid}/events", headers=auth) as stream:
                buf = ""
                async for chunk in stream.aiter_text():
                    buf += chunk
                    while "\n\n" in buf:
                        block, buf = buf.split("\n\n", 1)
                        ev = dict(line.split(": ", 1) for line in block.splitlines()
                                  if not line.startswith(":"))  # fmt: skip
                        if not ev:
                            continue
                        ev["data"] = json.loads(ev["data"])
                        seen.append(ev)
                        if ev["event"] == "prompt" and ev["data"]["code"] == INSERT_CARD:
                            # The payment is provably still running: it waits for this card.
                            await asyncio.wait_for(sim.terminal.card_waiting.wait(), 20)
                            sim.terminal.release_card()
    finally:
        stop.set()
        await worker
        server.should_exit = True
        await serving
        await rt.close()
    kinds = [e["event"] for e in seen]
    assert kinds[-1] == "end"
    texts = [e["data"].get("text") for e in seen]
    assert (
        texts.index("payment in_progress") < kinds.index("prompt") < texts.index("payment captured")
    )
    assert "receipt_line" in kinds
