"""The metastore's tables (SQLAlchemy Core) and the hashing that gives every row a short exact identity.

Identities (dag/run/task ids, keys up to 512 characters, asset names and URIs) are too long for
unique indexes on MySQL (3072 bytes) and PostgreSQL (~2700 bytes per btree entry), so each row is
addressed by the SHA-256 of its injective ``naming`` path; lookups compare the hash *and* the
plain columns, so a match is exact. On MySQL/MariaDB every string column uses the binary
``utf8mb4_bin`` collation, which makes comparisons case- and accent-sensitive as on the others.

The migrations in ``migrations/versions`` create exactly these tables; ``test_metastore_schema``
checks that the two agree.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

from statestore.core.naming import encode_segment, scope_path
from statestore.core.scopes import StoreScope, TaskScope

__all__ = [
    "ALEMBIC_VERSION_TABLE",
    "MYSQL_TABLE_OPTIONS",
    "REF_PREFIX",
    "Hash",
    "JsonText",
    "UtcDateTime",
    "asset",
    "asset_state",
    "digest",
    "metadata",
    "row_hash",
    "task_hash",
    "task_state",
]

ALEMBIC_VERSION_TABLE = "statestore_alembic_version"
"""Our own version table, so the metastore can share a database (even Airflow's) without clashing."""

REF_PREFIX = '{"__airflow_state_ref__"'
"""How a server row holding a worker-side reference begins (cleanup finds them with a prefix match)."""

MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC (microseconds on MySQL) and returns them aware in UTC."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        """DATETIME(6) on MySQL/MariaDB (seconds only by default), plain DATETIME/TIMESTAMP elsewhere."""
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware datetime -> naive UTC."""
        if value is None:
            return None
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Naive UTC -> aware UTC."""
        return None if value is None else value.replace(tzinfo=timezone.utc)


def Hash() -> sa.types.TypeEngine[str]:
    """A 64-character hex SHA-256 (single-byte ASCII on MySQL, to keep index entries small)."""
    return sa.CHAR(64).with_variant(mysql.CHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb")


def JsonText() -> sa.types.TypeEngine[str]:
    """JSON text of any size: TEXT on SQLite/PostgreSQL, LONGTEXT (4 GiB) on MySQL/MariaDB."""
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


metadata = sa.MetaData()

task_state = sa.Table(
    "statestore_task_state",
    metadata,
    sa.Column("id", Hash(), primary_key=True),  # row_hash()
    sa.Column("task_hash", Hash(), nullable=False),  # task_hash()
    sa.Column("dag_id", sa.Text(), nullable=False),
    sa.Column("run_id", sa.Text(), nullable=False),
    sa.Column("task_id", sa.Text(), nullable=False),
    sa.Column("map_index", sa.Integer(), nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("value", JsonText(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=True),
    sa.Index("statestore_task_state_task", "task_hash", "map_index"),
    sa.Index("statestore_task_state_expires", "expires_at"),
    **MYSQL_TABLE_OPTIONS,
)

asset = sa.Table(
    "statestore_asset",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text(), nullable=True),
    sa.Column("name_hash", Hash(), nullable=True, unique=True),
    sa.Column("uri", sa.Text(), nullable=True),
    sa.Column("uri_hash", Hash(), nullable=True, unique=True),
    sa.Column("asset_id", sa.BigInteger(), nullable=True, unique=True),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    **MYSQL_TABLE_OPTIONS,
)

asset_state = sa.Table(
    "statestore_asset_state",
    metadata,
    sa.Column(
        "asset_row_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("statestore_asset.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key_hash", Hash(), primary_key=True),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("value", JsonText(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=True),
    sa.Index("statestore_asset_state_expires", "expires_at"),
    **MYSQL_TABLE_OPTIONS,
)


def digest(text: str) -> str:
    """Hex SHA-256 of ``text``: an asset-store key's or an asset name's/URI's indexed stand-in."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=4096)
def _scope_prefix(scope: TaskScope) -> str:
    return "/".join(scope_path(scope)) + "/"


def row_hash(scope: TaskScope, key: str) -> str:
    """The primary key of a task row: hash of the injective path of ``(scope, key)``."""
    return digest(_scope_prefix(scope) + encode_segment(key))


@lru_cache(maxsize=4096)
def task_hash(scope: StoreScope) -> str:
    """Hash shared by every map index of a task (``clear(all_map_indices=True)`` and listing use it)."""
    return digest("/".join(scope_path(scope, all_map_indices=True)))
