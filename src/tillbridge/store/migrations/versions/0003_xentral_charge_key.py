"""xentral_pos_payments: the money asked for, and its semantic idempotency key

A Xentral event without a ``guid`` that was re-sent with other bytes used to start a second
payment. Each link now records the operation and the amount, and holds ``charge_key``
(``register/operation/document_type:document_number/amount currency``), unique per account.

Existing links are filled in from their payments. A key is held by the oldest link whose payment
may still move or has moved money; links whose payment ended without moving any, and earlier
duplicates, keep NULL (a unique index must not fail the upgrade over history). The key's format is frozen here on purpose: a migration must not import
the application code that builds it today.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Payment states that moved no money and never will (frozen copy of the 0003 rule).
_RELEASING = frozenset({"declined", "canceled", "failed", "expired", "voided"})


def upgrade() -> None:
    with op.batch_alter_table("xentral_pos_payments") as batch:
        batch.add_column(sa.Column("operation", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("amount_minor", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("currency", sa.String(length=3), nullable=True))
        batch.add_column(sa.Column("charge_key", sa.String(length=400), nullable=True))
    _backfill()
    with op.batch_alter_table("xentral_pos_payments") as batch:
        batch.create_index(
            "uq_xentral_pos_payments_account_charge", ["account", "charge_key"], unique=True
        )


def _backfill() -> None:
    bind = op.get_bind()
    links = sa.table(
        "xentral_pos_payments",
        sa.column("id", sa.BigInteger()),
        sa.column("payment_id", sa.String()),
        sa.column("account", sa.String()),
        sa.column("register", sa.String()),
        sa.column("document_type", sa.String()),
        sa.column("document_number", sa.String()),
        sa.column("operation", sa.String()),
        sa.column("amount_minor", sa.BigInteger()),
        sa.column("currency", sa.String()),
        sa.column("charge_key", sa.String()),
    )
    payments = sa.table(
        "payments",
        sa.column("id", sa.String()),
        sa.column("amount_minor", sa.BigInteger()),
        sa.column("currency", sa.String()),
        sa.column("state", sa.String()),
    )
    operations = sa.table(
        "operations",
        sa.column("payment_id", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("created_at", sa.DateTime()),
    )
    first_kind = (
        sa.select(operations.c.kind)
        .where(operations.c.payment_id == links.c.payment_id)
        .order_by(operations.c.created_at)
        .limit(1)
        .scalar_subquery()
    )
    rows = bind.execute(
        sa.select(
            links.c.id,
            links.c.account,
            links.c.register,
            links.c.document_type,
            links.c.document_number,
            payments.c.amount_minor,
            payments.c.currency,
            payments.c.state,
            first_kind.label("kind"),
        )
        .join(payments, payments.c.id == links.c.payment_id)
        .order_by(links.c.id)
    ).all()
    claimed: set[tuple[str, str]] = set()
    updates = []
    for r in rows:
        operation = "refund" if r.kind == "refund" else "purchase"
        key = (
            f"{r.register}/{operation}/{r.document_type}:{r.document_number}/"
            f"{r.amount_minor} {r.currency}"
        )
        holds = r.state not in _RELEASING and (r.account, key) not in claimed
        if holds:
            claimed.add((r.account, key))
        updates.append(
            {
                "link_id": r.id,
                "operation": operation,
                "amount_minor": r.amount_minor,
                "currency": r.currency,
                "charge_key": key if holds else None,
            }
        )
    if updates:
        bind.execute(
            links.update()
            .where(links.c.id == sa.bindparam("link_id"))
            .values(
                operation=sa.bindparam("operation"),
                amount_minor=sa.bindparam("amount_minor"),
                currency=sa.bindparam("currency"),
                charge_key=sa.bindparam("charge_key"),
            ),
            updates,
        )


def downgrade() -> None:
    with op.batch_alter_table("xentral_pos_payments") as batch:
        batch.drop_index("uq_xentral_pos_payments_account_charge")
        batch.drop_column("charge_key")
        batch.drop_column("currency")
        batch.drop_column("amount_minor")
        batch.drop_column("operation")
