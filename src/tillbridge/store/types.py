"""Column types shared by every table module, so both engines store the same things the same way."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator

#: Auto-incrementing ids: SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL wants
#: BIGINT for tables that grow by several rows per payment for years.
BigId = BigInteger().with_variant(Integer, "sqlite")
#: The largest id a BIGINT (and SQLite's INTEGER) holds. Every id that comes from a client is
#: bounded by it: the SQLite driver cannot even bind a larger one (``OverflowError``).
MAX_ROW_ID = 2**63 - 1


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both engines.

    PostgreSQL stores ``timestamptz``. SQLite has no timestamp type: values are stored as naive
    UTC text in one fixed-width format, so comparisons in SQL (``run_after <= :now``) stay
    correct as string comparisons. Values read back are always aware (UTC). Naive datetimes are
    refused: a guessed timezone is a silent scheduling or retention bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
