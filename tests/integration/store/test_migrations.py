"""Migrations: `db upgrade` builds exactly the schema the code declares, on both engines."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from tillbridge.errors import ConfigError, SchemaOutOfDate
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


@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
def test_0003_fills_in_the_charge_key_of_existing_links(empty_db_url: str) -> None:
    """History that already holds a double charge (the bug) must not fail the upgrade: the
    oldest link that may have moved money holds the key; the others keep NULL."""
    upgrade(empty_db_url, "0002")
    engine = create_engine(sync_url(empty_db_url))
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    pay = sa.table("payments", *_columns(_PAYMENT_COLUMNS))
    ops = sa.table("operations", *_columns(_OPERATION_COLUMNS))
    links = sa.table("xentral_pos_payments", *_columns(_LINK_COLUMNS))
    history = [  # payment, state, kind, amount, document
        ("pay_declined", "declined", "purchase", 1234, "40009001"),
        ("pay_first", "captured", "purchase", 1234, "40009001"),
        ("pay_double", "captured", "purchase", 1234, "40009001"),
        ("pay_refund", "refunded", "refund", 1234, "40009001"),
    ]
    with engine.begin() as conn:
        for i, (pid, state, kind, amount, doc) in enumerate(history, start=1):
            conn.execute(pay.insert().values(
                id=pid, amount_minor=amount, currency="EUR", reference=f"invoice:{doc}",
                connector="lane-term", state=state, captured_minor=0, refunded_minor=0,
                pending_refund_minor=0, metadata={}, version=0, created_at=now, updated_at=now,
            ))  # fmt: skip
            conn.execute(ops.insert().values(
                id=f"op_{i}", payment_id=pid, kind=kind, amount_minor=amount, currency="EUR",
                echo_id=str(i), detail={}, created_at=now, updated_at=now,
            ))  # fmt: skip
            conn.execute(links.insert().values(
                inbox_id=i, payment_id=pid, account="xpos", register="lane1", guid=None,
                document_type="invoice", document_number=doc, created_at=now,
            ))  # fmt: skip
    upgrade(empty_db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT payment_id, operation, amount_minor, currency, charge_key "
                    "FROM xentral_pos_payments ORDER BY id")
        ).all()  # fmt: skip
    engine.dispose()
    key = "lane1/purchase/invoice:40009001/1234 EUR"
    assert [tuple(r) for r in rows] == [
        ("pay_declined", "purchase", 1234, "EUR", None),
        ("pay_first", "purchase", 1234, "EUR", key),
        ("pay_double", "purchase", 1234, "EUR", None),
        ("pay_refund", "refund", 1234, "EUR", "lane1/refund/invoice:40009001/1234 EUR"),
    ]


_PAYMENT_COLUMNS = (
    "id", "amount_minor", "currency", "reference", "connector", "state", "captured_minor",
    "refunded_minor", "pending_refund_minor", "metadata", "version", "created_at", "updated_at",
)  # fmt: skip
_OPERATION_COLUMNS = (
    "id", "payment_id", "kind", "amount_minor", "currency", "echo_id", "detail", "created_at",
    "updated_at",
)  # fmt: skip
_LINK_COLUMNS = (
    "inbox_id", "payment_id", "account", "register", "guid", "document_type", "document_number",
    "created_at",
)  # fmt: skip


def _columns(names: tuple[str, ...]) -> list[sa.ColumnClause[object]]:
    typed = {"metadata": sa.JSON(), "detail": sa.JSON(), "created_at": sa.DateTime(True),
             "updated_at": sa.DateTime(True)}  # fmt: skip
    return [sa.column(n, typed.get(n)) for n in names]


def test_a_sqlite_file_in_a_missing_directory_is_named_and_nothing_is_created(
    tmp_path: Path,
) -> None:
    """Issue 13.12: not "schema is at nothing", but which file does not exist, and the fix."""
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'tb.db'}"
    with pytest.raises(SchemaOutOfDate) as caught:
        require_current(url)
    message = caught.value.message
    assert str(tmp_path / "no" / "such" / "dir" / "tb.db") in message
    assert "does not exist yet" in message and "tillbridge db upgrade" in message
    assert not (tmp_path / "no").exists()  # asking created nothing
    assert upgrade(url).up_to_date  # the upgrade creates the directory and the file
    require_current(url)


def test_a_directory_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(ConfigError, match="cannot create the directory"):
        upgrade(f"sqlite:///{blocker / 'tb.db'}")


@pytest.mark.anyio
@pytest.mark.parametrize("empty_db_url", ENGINES, indirect=True)
async def test_tables_that_do_not_exist_are_schema_out_of_date_not_a_driver_error(
    empty_db_url: str,
) -> None:
    from tillbridge.services import apikeys
    from tillbridge.store.db import Database

    db = Database(empty_db_url)  # an empty database: no tables at all
    try:
        with pytest.raises(SchemaOutOfDate, match="tillbridge db upgrade"):
            async with db.write() as conn:
                await apikeys.create_key(conn, "me", ["admin"])
    finally:
        await db.dispose()
