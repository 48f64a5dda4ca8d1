"""Keyset pagination, one style for every listing: an opaque ``cursor`` in, ``next_cursor`` out.

Every listing of the bridge (payments, jobs, the webhook inbox, outgoing deliveries, the audit
log) is newest first, ordered by one or more columns of which the last is unique, e.g.
``ORDER BY created_at DESC, id DESC`` or just ``ORDER BY id DESC``. A page reads ``limit + 1``
rows: the extra row only says that there is a next page, whose cursor encodes the key of this
page's last row. The next page is everything strictly after that key in the same order, so pages
stay stable while new rows arrive and cost an index range scan at any depth (no ``OFFSET``). The
last page has ``next_cursor`` null.

The cursor is opaque to clients: unpadded base64url of the JSON list of the key values
(datetimes in ISO 8601). It is client input, so :meth:`Keyset.decode` checks its shape, types and
ranges and raises :class:`~tillbridge.errors.InvalidCursor` (422 ``invalid_cursor``) for anything
else; an integer beyond 64 bits, which the SQLite driver cannot even bind, is one of those.

Example::

    _PAGES = Keyset(jobs.c.id)
    stmt = _PAGES.paginate(select(jobs).where(...), cursor, limit)
    page = _PAGES.page(list(await conn.execute(stmt)), limit)  # Page(items, next_cursor)
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Generic, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.types import TypeDecorator

from tillbridge.errors import InvalidCursor

__all__ = ["MAX_CURSOR_CHARS", "Keyset", "Page"]

#: Longest cursor accepted; the longest one the bridge makes (a timestamp and an id) is ~80.
MAX_CURSOR_CHARS: Final = 500

# What a BIGINT column holds, and what sqlite3 can bind (a larger int raises OverflowError).
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1

_T = TypeVar("_T")
_U = TypeVar("_U")
_S = TypeVar("_S", bound=Select[Any])


class Page(NamedTuple, Generic[_T]):
    """One page of a listing; pass ``next_cursor`` as ``cursor`` for the next (null: the end).

    A named tuple, so ``items, next_cursor = page`` works too.
    """

    items: list[_T]
    next_cursor: str | None

    def map(self, fn: Callable[[_T], _U]) -> Page[_U]:
        """The same page with every item passed through ``fn``."""
        return Page([fn(item) for item in self.items], self.next_cursor)


class Keyset:
    """Newest-first keyset pagination over ``columns`` (the last one unique, none nullable).

    Key columns hold integers, strings or aware datetimes (read from each column's type).
    """

    def __init__(self, *columns: ColumnElement[Any]) -> None:
        if not columns:
            raise ValueError("a keyset needs at least one column")
        kinds: list[type] = []
        for col in columns:
            sql_type = col.type
            if isinstance(sql_type, TypeDecorator):  # UTCDateTime: what it stores is its impl's
                sql_type = sql_type.impl_instance
            kind = sql_type.python_type
            if kind not in (int, str, datetime):
                raise TypeError(f"keyset column {col} holds {kind.__name__}; int, str or datetime")
            kinds.append(kind)
        self.columns: tuple[ColumnElement[Any], ...] = columns
        self._kinds: tuple[type, ...] = tuple(kinds)

    # cursor -------------------------------------------------------------------------------------

    def encode(self, values: Sequence[Any]) -> str:
        """The cursor for the key ``values`` (one per column)."""
        if len(values) != len(self.columns):
            raise ValueError(f"a key of this keyset has {len(self.columns)} values")
        plain = [v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v for v in values]
        return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")

    def decode(self, cursor: str) -> tuple[Any, ...]:
        """The key values in ``cursor``; raises :class:`InvalidCursor` unless it is one of ours."""
        if not cursor or len(cursor) > MAX_CURSOR_CHARS:
            raise InvalidCursor()
        try:
            raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
            data = json.loads(raw)
        except (ValueError, binascii.Error) as exc:  # UnicodeError and JSONDecodeError included
            raise InvalidCursor() from exc
        if not isinstance(data, list) or len(data) != len(self._kinds):
            raise InvalidCursor()
        return tuple(_value(kind, v) for kind, v in zip(self._kinds, data, strict=True))

    # SQL ----------------------------------------------------------------------------------------

    def after(self, values: Sequence[Any]) -> ColumnElement[bool]:
        """Rows strictly after the key ``values`` in newest-first order."""
        terms: list[ColumnElement[bool]] = []
        for i, (col, value) in enumerate(zip(self.columns, values, strict=True)):
            ties = [c == v for c, v in zip(self.columns[:i], values[:i], strict=True)]
            terms.append(and_(*ties, col < value) if ties else col < value)
        return terms[0] if len(terms) == 1 else or_(*terms)

    def paginate(self, stmt: _S, cursor: str | None, limit: int) -> _S:
        """``stmt`` restricted to the page after ``cursor``: keyset condition, newest-first
        order and ``limit + 1`` rows (the extra one tells :meth:`page` that more exist)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if cursor is not None:
            stmt = stmt.where(self.after(self.decode(cursor)))
        return stmt.order_by(*(c.desc() for c in self.columns)).limit(limit + 1)

    def page(
        self,
        rows: Sequence[_T],
        limit: int,
        key: Callable[[_T], Sequence[Any]] | None = None,
    ) -> Page[_T]:
        """The page of ``rows`` (read with :meth:`paginate`'s statement) and its next cursor.

        ``key`` gives a row's key values; by default they are read from a SQLAlchemy ``Row``
        by column.
        """
        if len(rows) <= limit:
            return Page(list(rows), None)
        items = list(rows[:limit])
        last = items[-1]
        values = key(last) if key is not None else self._row_key(last)
        return Page(items, self.encode(values))

    def _row_key(self, row: Any) -> tuple[Any, ...]:
        mapping = row._mapping
        return tuple(mapping[c] for c in self.columns)


def _value(kind: type, value: Any) -> Any:
    """One decoded key value, checked against its column's kind."""
    if kind is int:
        # bool is an int to Python, not to us.
        if type(value) is not int or not _INT_MIN <= value <= _INT_MAX:
            raise InvalidCursor()
        return value
    if kind is str:
        # PostgreSQL text cannot hold NUL: the driver would refuse the parameter.
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidCursor()
        return value
    if not isinstance(value, str):
        raise InvalidCursor()
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("naive")  # we only ever write aware UTC timestamps
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 moved west of UTC
        raise InvalidCursor() from exc
