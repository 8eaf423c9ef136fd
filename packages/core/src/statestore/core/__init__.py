"""statestore-core: the task/asset state store contract, scopes, configuration, plugins and default backends.

Light names are imported eagerly; the SQL metastore and the worker-facing ``StateStore`` (which
need SQLAlchemy) and the backend classes are imported on first access, so ``import statestore.core``
stays fast (and Airflow, when loaded, learns of them: see :mod:`statestore.core.airflow_compat`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from statestore.core import airflow_compat
from statestore.core.base import BaseStoreBackend, CleanupResult, ReferenceNotFoundError, StoreBackend, StoredEntry
from statestore.core.config import Config, load_config
from statestore.core.errors import (
    BackendImportError,
    BackendNotFoundError,
    BackendNotInstalledError,
    CommitUnknownError,
    ConfigurationError,
    DuplicateBackendError,
    InvalidReferenceError,
    StateStoreError,
    StorageError,
    ValueTooLargeError,
)
from statestore.core.plugins import BackendInfo, BackendSpec, available_backends, load_backend
from statestore.core.scopes import NEVER_EXPIRE, AssetScope, StoreScope, TaskScope

if TYPE_CHECKING:
    from statestore.core.backends.local import LocalStoreBackend
    from statestore.core.backends.memory import MemoryStoreBackend
    from statestore.core.metastore import MetastoreStoreBackend
    from statestore.core.primitive import PrimitiveStoreBackend
    from statestore.core.store import AssetStoreAccessor, AssetStoreAccessors, StateStore, TaskStoreAccessor

__all__ = [
    "NEVER_EXPIRE",
    "AssetScope",
    "AssetStoreAccessor",
    "AssetStoreAccessors",
    "BackendImportError",
    "BackendInfo",
    "BackendNotFoundError",
    "BackendNotInstalledError",
    "BackendSpec",
    "BaseStoreBackend",
    "CleanupResult",
    "CommitUnknownError",
    "Config",
    "ConfigurationError",
    "DuplicateBackendError",
    "InvalidReferenceError",
    "LocalStoreBackend",
    "MemoryStoreBackend",
    "MetastoreStoreBackend",
    "PrimitiveStoreBackend",
    "ReferenceNotFoundError",
    "StateStore",
    "StateStoreError",
    "StorageError",
    "StoreBackend",
    "StoreScope",
    "StoredEntry",
    "TaskScope",
    "TaskStoreAccessor",
    "ValueTooLargeError",
    "available_backends",
    "load_backend",
    "load_config",
]

_LAZY = {
    "LocalStoreBackend": "statestore.core.backends.local",
    "MemoryStoreBackend": "statestore.core.backends.memory",
    "MetastoreStoreBackend": "statestore.core.metastore",
    "PrimitiveStoreBackend": "statestore.core.primitive",
    "StateStore": "statestore.core.store",
    "TaskStoreAccessor": "statestore.core.store",
    "AssetStoreAccessor": "statestore.core.store",
    "AssetStoreAccessors": "statestore.core.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        airflow_compat.register_with_airflow()  # a class path Airflow imports (see statestore.core.airflow_compat)
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'statestore.core' has no attribute {name!r}")
