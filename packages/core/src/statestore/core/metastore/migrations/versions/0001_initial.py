"""Initial metastore schema: task state, asset identity and asset state.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from statestore.core.metastore.schema import MYSQL_TABLE_OPTIONS, Hash, JsonText, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _row_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the three tables and their indexes."""
    op.create_table(
        "statestore_task_state",
        sa.Column("id", Hash(), primary_key=True),
        sa.Column("task_hash", Hash(), nullable=False),
        sa.Column("dag_id", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("value", JsonText(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("statestore_task_state_task", "statestore_task_state", ["task_hash", "map_index"])
    op.create_index("statestore_task_state_expires", "statestore_task_state", ["expires_at"])
    op.create_table(
        "statestore_asset",
        sa.Column("id", _row_id(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("name_hash", Hash(), nullable=True, unique=True),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.Column("uri_hash", Hash(), nullable=True, unique=True),
        sa.Column("asset_id", sa.BigInteger(), nullable=True, unique=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_table(
        "statestore_asset_state",
        sa.Column(
            "asset_row_id",
            _row_id(),
            sa.ForeignKey("statestore_asset.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key_hash", Hash(), primary_key=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("value", JsonText(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("statestore_asset_state_expires", "statestore_asset_state", ["expires_at"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("statestore_asset_state")
    op.drop_table("statestore_asset")
    op.drop_table("statestore_task_state")
