"""operations: sent_at and recovery_attempts (one payment engine)

The engine marks every operation as sent in the transaction that precedes the call (persist
before send) and counts the status queries made to recover it, for terminals and providers
alike.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("recovery_attempts", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("recovery_attempts")
        batch.drop_column("sent_at")
