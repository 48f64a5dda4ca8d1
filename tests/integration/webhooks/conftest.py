"""Fixtures of the webhook tests (helpers live in ``wh_support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from wh_support import Bridge, make_config, open_bridge, set_secret_env


@pytest.fixture
async def bridge(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bridge]:
    """A bridge with one Xentral account (``xpos``), register ``lane1`` = project 1."""
    set_secret_env(monkeypatch)
    async with open_bridge(db_url, make_config()) as b:
        yield b
