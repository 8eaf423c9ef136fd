"""The core's own backends, registered through the ``statestore.plugins`` entry point like any plugin.

Also statestore-core's Airflow provider metadata (the ``apache_airflow_provider`` entry point):
``[statestore_local]`` and the ``[state_store]`` settings statestore adds to Airflow's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statestore.core.plugins import BackendSpec, hookimpl
from statestore.core.settings import SettingSpec, object_store_settings, provider_info

if TYPE_CHECKING:
    import argparse

LOCAL_SETTINGS = object_store_settings(
    SettingSpec("path", str, None, "directory holding the files; default: the directory objects in STATESTORE_HOME")
)
"""``[statestore_local]``: the ``local`` backend's settings."""


AIRFLOW_STATE_STORE_KEYS = frozenset(
    {"backend", "clear_on_success", "default_retention_days", "state_cleanup_batch_size", "max_value_storage_bytes"}
)
"""The ``[state_store]`` keys Airflow 3.3 declares itself (its provider metadata must not redeclare them)."""


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


def get_provider_info() -> dict[str, Any]:
    """statestore-core as an Airflow provider: its ``[state_store]`` additions and ``[statestore_local]``."""
    from statestore.core.config import CORE_SETTINGS

    own = tuple(spec for spec in CORE_SETTINGS["state_store"] if spec.name not in AIRFLOW_STATE_STORE_KEYS)
    return provider_info(
        "statestore-core",
        "statestore",
        "Task-state and asset-state stores for Airflow 3.3: contract, SQL metastore, local files, `state-store` CLI.",
        {
            "state_store": ("Task and asset state storage (statestore's additions to Airflow's section).", own),
            "statestore_local": ("statestore's local backend: one file per key in a directory.", LOCAL_SETTINGS),
        },
    )
