"""The one clock of the bridge: where "now" comes from.

Every component that needs the time takes a :data:`Clock` (a function returning an aware UTC
datetime) and defaults to :func:`utcnow`. Tests inject :class:`tillbridge.testing.FakeClock` and
move time instead of waiting. Nothing else calls ``datetime.now``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: Where a component gets "now" from: an aware datetime in UTC.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The default :data:`Clock`: the aware current time in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime; a naive one is read as UTC (SQLite returns those)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


__all__ = ["Clock", "as_utc", "utcnow"]
