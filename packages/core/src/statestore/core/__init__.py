"""statestore-core: the task/asset state store contract, scopes, configuration, plugins and default backends.

Light names are imported eagerly; the SQL metastore and the worker-facing ``StateStore`` (which
need SQLAlchemy) are imported on first access, so ``import statestore.core`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from statestore.core.base import BaseStoreBackend, CleanupResult, ReferenceNotFoundError, StoredEntry
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
    from statestore.core.metastore import MetastoreStoreBackend
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
    "MetastoreStoreBackend",
    "ReferenceNotFoundError",
    "StateStore",
    "StateStoreError",
    "StorageError",
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
    "MetastoreStoreBackend": "statestore.core.metastore",
    "StateStore": "statestore.core.store",
    "TaskStoreAccessor": "statestore.core.store",
    "AssetStoreAccessor": "statestore.core.store",
    "AssetStoreAccessors": "statestore.core.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'statestore.core' has no attribute {name!r}")
