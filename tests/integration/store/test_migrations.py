"""Migrations: `db upgrade` builds exactly the schema the code declares, on both engines."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from tillbridge.errors import SchemaOutOfDate
from tillbridge.store.db import sync_url
from tillbridge.store.migrate import head_revision, require_current, schema_status, upgrade
from tillbridge.store.schema import all_tables

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
def test_upgrade_from_empty_matches_the_declared_schema(empty_db_url: str) -> None:
    with pytest.raises(SchemaOutOfDate, match="tillbridge db upgrade"):
        require_current(empty_db_url)
    assert schema_status(empty_db_url).current is None
    status = upgrade(empty_db_url)
    assert status.up_to_date and status.current == head_revision()
    require_current(empty_db_url)
    engine = create_engine(sync_url(empty_db_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), all_tables())
    engine.dispose()
    assert diff == [], f"migrations and table modules disagree: {diff}"


@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
def test_upgrade_twice_is_a_noop(empty_db_url: str) -> None:
    first = upgrade(empty_db_url)
    second = upgrade(empty_db_url)
    assert first == second
