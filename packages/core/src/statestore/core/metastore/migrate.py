"""Versioned schema migrations (Alembic, shipped inside the package: no ``alembic.ini`` needed)."""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from statestore.core.metastore.engines import transaction
from statestore.core.metastore.schema import ALEMBIC_VERSION_TABLE

__all__ = ["current_revision", "head_revision", "upgrade"]

_SCRIPTS = Path(__file__).with_name("migrations")
_ALEMBIC_LOCK = threading.Lock()  # Alembic's ``context`` is module-global: one migration at a time per process


def _new_lock_in_child() -> None:
    """A forked child has none of the parent's threads, so none can be migrating there."""
    global _ALEMBIC_LOCK
    _ALEMBIC_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _alembic_config(connection: sa.Connection | None = None) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest schema revision this version of statestore knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    """The revision the database is at, or None when the metastore was never installed there."""
    with engine.connect() as connection:
        return MigrationContext.configure(
            connection, opts={"version_table": ALEMBIC_VERSION_TABLE}
        ).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the database to ``revision``; return ``(revision before, revision after)``."""
    before = current_revision(engine)
    if before == head_revision() and revision == "head":
        return before, before
    # On SQLite, BEGIN IMMEDIATE: concurrent first users queue, and the DDL is one transaction.
    with _ALEMBIC_LOCK, engine.connect() as connection, transaction(connection):
        command.upgrade(_alembic_config(connection), revision)
    return before, current_revision(engine) or ""
