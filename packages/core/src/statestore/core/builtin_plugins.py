"""The core's own backends, registered through the ``statestore.plugins`` entry point like any plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statestore.core.plugins import BackendSpec, hookimpl
from statestore.core.settings import SettingSpec, object_store_settings

if TYPE_CHECKING:
    import argparse

LOCAL_SETTINGS = object_store_settings(
    SettingSpec("path", str, None, "directory holding the files; default: the directory objects in STATESTORE_HOME")
)
"""``[statestore_local]``: the ``local`` backend's settings."""


@hookimpl
def statestore_backends() -> list[BackendSpec]:
    """Announce ``metastore``, ``local`` and ``memory``."""
    return [
        BackendSpec(
            name="metastore",
            class_path="statestore.core.metastore:MetastoreStoreBackend",
            description="SQL tables via SQLAlchemy: SQLite (default), PostgreSQL, MySQL/MariaDB",
            requires=("sqlalchemy",),
            settings=(),  # its settings live in [state_store]
        ),
        BackendSpec(
            name="local",
            class_path="statestore.core.backends.local:LocalStoreBackend",
            description="one file per key in a local directory ([statestore_local] path)",
            settings=LOCAL_SETTINGS,
        ),
        BackendSpec(
            name="memory",
            class_path="statestore.core.backends.memory:MemoryStoreBackend",
            description="process-local dictionary, for tests and examples",
            settings=(),
        ),
    ]


@hookimpl
def statestore_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the stored-state commands: ``task``, ``asset``, ``clean``, ``db migrate`` and ``demo``."""
    from statestore.core.cli_store import register

    register(subparsers)
