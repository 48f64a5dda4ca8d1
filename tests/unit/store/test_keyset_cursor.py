"""Keyset cursors: what goes in comes out, anything else is InvalidCursor (never a crash)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Float, Integer, MetaData, String, Table, select
from sqlalchemy.dialects import sqlite

from tillbridge.errors import InvalidCursor, ValidationError
from tillbridge.store.keyset import MAX_CURSOR_CHARS, Keyset, Page
from tillbridge.store.types import UTCDateTime

_meta = MetaData()
t = Table(
    "t",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("ref", String(40), nullable=False),
    Column("ratio", Float),
)
BY_ID = Keyset(t.c.id)
BY_TIME = Keyset(t.c.at, t.c.ref)


def raw(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@given(st.integers(-(2**63), 2**63 - 1))
def test_integer_keys_round_trip(value: int) -> None:
    assert BY_ID.decode(BY_ID.encode([value])) == (value,)


@given(
    at=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ),
    ref=st.text(st.characters(blacklist_characters="\x00"), max_size=40),
)
def test_time_and_string_keys_round_trip_as_utc(at: datetime, ref: str) -> None:
    cursor = BY_TIME.encode([at, ref])
    assert len(cursor) <= MAX_CURSOR_CHARS
    decoded_at, decoded_ref = BY_TIME.decode(cursor)
    assert decoded_at == at and decoded_at.tzinfo == UTC and decoded_ref == ref


@pytest.mark.parametrize(
    ("keyset", "cursor"),
    [
        (BY_ID, ""),  # empty
        (BY_ID, "A" * (MAX_CURSOR_CHARS + 1)),  # too long
        (BY_ID, "not a cursor!"),  # not base64
        (BY_ID, "é"),  # not even ASCII
        (BY_ID, base64.urlsafe_b64encode(b"\xff\xfe").decode()),  # not UTF-8
        (BY_ID, raw("{}")[:-2]),  # not JSON
        (BY_ID, raw({"id": 1})),  # not a list
        (BY_ID, raw([])),  # wrong length
        (BY_ID, raw([1, 2])),
        (BY_ID, raw([2**63])),  # beyond 64 bits (sqlite3 raised OverflowError)
        (BY_ID, raw([-(2**63) - 1])),
        (BY_ID, raw([True])),  # a bool is not an id
        (BY_ID, raw([1.0])),
        (BY_ID, raw(["1"])),
        (BY_ID, raw([None])),
        (BY_TIME, raw(["2026-01-01T00:00:00", "r"])),  # naive: never written by the bridge
        (BY_TIME, raw(["0001-01-01T00:00:00+01:00", "r"])),  # before year 1 in UTC
        (BY_TIME, raw(["soon", "r"])),
        (BY_TIME, raw([1767225600, "r"])),
        (BY_TIME, raw(["2026-01-01T00:00:00+00:00", 7])),
        (BY_TIME, raw(["2026-01-01T00:00:00+00:00", "a\x00b"])),  # PostgreSQL text has no NUL
    ],
)
def test_anything_else_is_invalid_cursor(keyset: Keyset, cursor: str) -> None:
    with pytest.raises(InvalidCursor) as info:
        keyset.decode(cursor)
    assert isinstance(info.value, ValidationError)
    assert (info.value.http_status, info.value.code) == (422, "invalid_cursor")


@given(st.text(max_size=600))
def test_decoding_never_raises_anything_but_invalid_cursor(cursor: str) -> None:
    try:
        BY_TIME.decode(cursor)
    except InvalidCursor:
        pass


def test_the_keyset_condition_and_order_are_newest_first() -> None:
    cursor = BY_TIME.encode([datetime(2026, 1, 1, tzinfo=UTC), "r"])
    stmt = BY_TIME.paginate(select(t.c.id), cursor, 5)
    sql = str(stmt.compile(dialect=sqlite.dialect()))
    assert "t.at < ? OR t.at = ? AND t.ref < ?" in sql
    assert "ORDER BY t.at DESC, t.ref DESC" in sql
    assert "LIMIT ?" in sql and stmt._limit == 6  # one more than asked: is there a next page?
    assert "WHERE" not in str(BY_ID.paginate(select(t.c.id), None, 5))


def test_a_page_has_a_next_cursor_only_when_the_extra_row_came_back() -> None:
    rows = [{"id": i} for i in (9, 8, 7)]
    page = BY_ID.page(rows, 2, key=lambda r: [r["id"]])
    assert page == Page([{"id": 9}, {"id": 8}], BY_ID.encode([8]))
    items, next_cursor = page  # a named tuple
    assert items == page.items and BY_ID.decode(next_cursor or "") == (8,)
    assert BY_ID.page(rows, 3, key=lambda r: [r["id"]]) == Page(rows, None)
    assert page.map(lambda r: r["id"]) == Page([9, 8], page.next_cursor)


def test_keysets_only_take_integer_string_or_time_columns() -> None:
    with pytest.raises(TypeError):
        Keyset(t.c.ratio)
    with pytest.raises(ValueError):
        Keyset()
    with pytest.raises(ValueError):
        BY_ID.paginate(select(t.c.id), None, 0)
