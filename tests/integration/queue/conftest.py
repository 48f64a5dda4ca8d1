"""Fixtures for the queue tests: a clock that tests move by hand."""

from __future__ import annotations

import pytest

from tillbridge.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """Stands still until a test moves it; starts at the real time so SQLite and PG agree."""
    return FakeClock()
