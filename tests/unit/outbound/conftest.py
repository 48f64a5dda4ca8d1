"""Fixtures for the outbound client tests: a scripted MockTransport and a fake clock.

No test here sleeps for real: the client gets ``FakeClock.sleep``, which only advances the fake
clock and records the requested delay.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx2
import pytest

from tillbridge.outbound import OutboundClient
from tillbridge.testing import FakeClock

Step = httpx2.Response | type[Exception] | Callable[[httpx2.Request], httpx2.Response]


class Script:
    """A MockTransport handler that plays one step per request and records the requests.

    A step is a response, an httpx exception class (raised with the request attached) or a
    callable. The last step repeats when the script runs out.
    """

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, httpx2.Response):
            return httpx2.Response(
                step.status_code, headers=step.headers, content=step.content, request=request
            )
        if isinstance(step, type):
            if issubclass(step, httpx2.RequestError):
                raise step("scripted failure", request=request)
            raise cast(type[Exception], step)("scripted failure")
        return step(request)

    @property
    def calls(self) -> int:
        return len(self.requests)


@pytest.fixture
def fake_time() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(fake_time: FakeClock) -> Iterator[Callable[..., OutboundClient]]:
    def build(script: Script, **kwargs: Any) -> OutboundClient:
        kwargs.setdefault("account", "acme:eu")
        kwargs.setdefault("base_url", "https://api.provider.test")
        return OutboundClient(
            transport=httpx2.MockTransport(script),
            clock=fake_time.monotonic,
            wall_clock=fake_time.time,
            sleep=fake_time.sleep,
            rng=random.Random(7),
            **kwargs,
        )

    yield build


def resp(status: int, body: bytes = b"{}", **headers: str) -> httpx2.Response:
    return httpx2.Response(status, content=body, headers=headers)


@pytest.fixture
def r() -> Callable[..., httpx2.Response]:
    return resp


@pytest.fixture
def script() -> type[Script]:
    return Script
