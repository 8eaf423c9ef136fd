"""The SQL metastore: task and asset state in SQLite (default), PostgreSQL or MySQL/MariaDB via SQLAlchemy 2.

Imported lazily by ``statestore.core`` (it needs SQLAlchemy); see :mod:`.backend` for the semantics.
"""

from __future__ import annotations

from statestore.core.metastore.backend import MetastoreStoreBackend

__all__ = ["MetastoreStoreBackend"]
