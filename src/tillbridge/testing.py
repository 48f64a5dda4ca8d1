"""Test doubles shipped with the package: a runtime factory, a fake clock, problem assertions.

For the bridge's own tests and for integrators testing against it, as procrastinate ships its
in-memory connector::

    clock = FakeClock()
    rt = make_runtime("sqlite:///./t.db", clock=clock)   # the fake sandbox, real everything else
    ...
    clock.advance(seconds=30)                           # instead of sleeping
    assert_problem(response, 422, "not_supported")

Nothing here is used by production code; it builds the same runtime ``serve`` does, through the
same composition root (:func:`tillbridge.app.runtime.build_runtime`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tillbridge.app.registry import default_registry
from tillbridge.app.runtime import Runtime, build_runtime
from tillbridge.config import MerchantConfig
from tillbridge.inbound.settings import InboundSettings
from tillbridge.outbound import OutboundHub
from tillbridge.payments.contract import Connector
from tillbridge.settings import Settings


class FakeClock:
    """A clock tests move instead of waiting.

    ``frozen`` (the default): time stands still until :meth:`advance`. With ``frozen=False`` it
    runs with the real time, shifted by everything :meth:`advance` added (a start timeout can
    pass in an instant while the worker's real-time polling still works). ``wall`` (alias
    ``time``) and ``monotonic`` are the same clock as seconds, for components that take those;
    :meth:`sleep` is an ``asyncio.sleep`` stand-in that advances the clock instead of waiting
    and records each delay in ``sleeps``.
    """

    def __init__(
        self, *, frozen: bool = True, start: datetime | None = None, ahead: timedelta | None = None
    ) -> None:
        self.frozen = frozen
        self.offset = ahead or timedelta(0)
        self.start = (start or datetime.now(UTC)).replace(microsecond=0)
        self._mono = 1000.0
        self.sleeps: list[float] = []

    @property
    def now(self) -> datetime:
        base = self.start if self.frozen else datetime.now(UTC)
        return base + self.offset

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        step = timedelta(seconds=seconds, **delta)
        self.offset += step
        self._mono += step.total_seconds()
        return self.now

    def wall(self) -> float:
        return self.now.timestamp()

    time = wall

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


def make_runtime(
    database_url: str,
    config: MerchantConfig | None = None,
    *,
    connectors: Mapping[str, Connector] | None = None,
    clock: FakeClock | None = None,
    inbound: InboundSettings | None = None,
    outbound: OutboundHub | None = None,
    **settings: Any,
) -> Runtime:
    """A runtime on ``database_url`` (whose schema must exist), built like ``serve`` builds one.

    ``config`` defaults to the built-in sandbox (``[connectors.fake]``); ``connectors`` add to
    or replace, by name, what the config builds (instrumented fakes); ``settings`` are
    :class:`~tillbridge.settings.Settings` fields. Nothing is read from the environment's
    config file.
    """
    settings.setdefault("redact_values", [])
    s = Settings(database_url=database_url, **settings)
    return build_runtime(
        s,
        config if config is not None else default_registry().default_config(),
        connectors=connectors,
        clock=clock or FakeClock(frozen=False),
        inbound=inbound,
        outbound=outbound,
    )


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """``response`` (an httpx2 response) is a problem+json with ``status`` (and ``code``);
    returns its body."""
    assert response.status_code == status, response.text
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert {"type", "title", "detail", "code"} <= body.keys(), body
    if code is not None:
        assert body["code"] == code, body
    return body


__all__ = ["FakeClock", "assert_problem", "make_runtime"]
