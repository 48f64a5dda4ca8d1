"""The shared SQL helpers on both engines: insert-or-ignore and keyset pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, func, select

from tillbridge.errors import InvalidCursor
from tillbridge.store.db import Database, sync_url
from tillbridge.store.keyset import Keyset
from tillbridge.store.sql import insert_or_ignore
from tillbridge.store.types import UTCDateTime

pytestmark = pytest.mark.anyio

_meta = MetaData()
rows = Table(
    "tb_test_keyset_rows",
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("name", String(40), nullable=False, unique=True),
)
INSERT = insert_or_ignore(rows, index_elements=[rows.c.name], returning=[rows.c.id])
ANY_CONFLICT = insert_or_ignore(rows)
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
async def tdb(db_url: str) -> AsyncIterator[Database]:
    engine = create_engine(sync_url(db_url))
    _meta.drop_all(engine)
    _meta.create_all(engine)
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()
        _meta.drop_all(engine)
        engine.dispose()


async def test_insert_or_ignore_inserts_once_and_keeps_the_transaction_usable(
    tdb: Database,
) -> None:
    async with tdb.write() as conn:
        first = await conn.execute(INSERT.on(conn), {"id": 1, "at": T0, "name": "a"})
        assert first.scalar_one_or_none() == 1
        again = await conn.execute(INSERT.on(conn), {"id": 2, "at": T0, "name": "a"})
        assert again.scalar_one_or_none() is None  # the name existed: nothing inserted
        # A conflict on the primary key (no target named) is ignored too.
        await conn.execute(ANY_CONFLICT.on(conn), {"id": 1, "at": T0, "name": "b"})
        # The transaction was not aborted (PostgreSQL aborts on a failed statement).
        assert (await conn.execute(select(func.count()).select_from(rows))).scalar_one() == 1
    async with tdb.write() as conn:  # executemany with RETURNING: only the new rows come back
        params = [{"id": i, "at": T0, "name": n} for i, n in [(3, "a"), (4, "c"), (5, "d")]]
        result = await conn.execute(INSERT.on(conn), params)
        assert sorted(r.id for r in result) == [4, 5]


async def test_keyset_pages_cover_every_row_once_with_ties_on_the_first_column(
    tdb: Database,
) -> None:
    # Three rows share each timestamp: the id breaks the ties.
    async with tdb.write() as conn:
        await conn.execute(
            rows.insert(),
            [
                {"id": i, "at": T0 + timedelta(seconds=i // 3), "name": f"n{i}"}
                for i in range(1, 11)
            ],
        )
    pages = Keyset(rows.c.at, rows.c.id)
    seen: list[int] = []
    cursor: str | None = None
    async with tdb.read() as conn:
        for _ in range(10):
            stmt = pages.paginate(select(rows), cursor, 4)
            page = pages.page(list(await conn.execute(stmt)), 4)
            seen += [r.id for r in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == sorted(range(1, 11), key=lambda i: (i // 3, i), reverse=True)
        assert pages.decode(pages.encode([T0, 7])) == (T0, 7)
        with pytest.raises(InvalidCursor):
            pages.paginate(select(rows), "e30", 4)  # base64 of {}: not a key
