"""session generations for users, leases for idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 20:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("user_message_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("user_message_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_generation")
