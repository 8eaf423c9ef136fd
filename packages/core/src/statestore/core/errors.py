"""The exception hierarchy: everything statestore raises on purpose derives from StateStoreError."""

from __future__ import annotations

__all__ = [
    "BackendImportError",
    "BackendNotFoundError",
    "BackendNotInstalledError",
    "CommitUnknownError",
    "ConfigurationError",
    "DuplicateBackendError",
    "InvalidReferenceError",
    "StateStoreError",
    "StorageError",
    "ValueTooLargeError",
]


class StateStoreError(Exception):
    """Base class of every error statestore raises deliberately."""


class ConfigurationError(StateStoreError, ValueError):
    """A setting is missing or invalid; the message names the key and where it came from."""


class BackendNotFoundError(StateStoreError, LookupError):
    """No installed plugin provides the requested backend name."""


class BackendNotInstalledError(BackendNotFoundError):
    """The name belongs to a known distribution that is not installed."""


class BackendImportError(StateStoreError, ImportError):
    """A backend (or the plugin module announcing it) failed to import; the cause is chained."""


class DuplicateBackendError(StateStoreError):
    """Two distributions register the same backend name; statestore refuses to pick one by install order."""


class InvalidReferenceError(StateStoreError, ValueError):
    """A stored reference is malformed or points outside the backend's own storage."""


class ValueTooLargeError(StateStoreError, ValueError):
    """A value exceeds ``[state_store] max_value_storage_bytes`` and no worker-side backend offloads it."""


class StorageError(StateStoreError):
    """The storage service failed in a way retries did not fix; the service's error is chained."""


class CommitUnknownError(StorageError):
    """The connection died while a write was being committed: it may or may not have been applied.

    Raised instead of repeating a write that is unsafe to repeat (a row holding a worker-side
    reference); read the key to learn the outcome. The driver's error is chained.
    """
