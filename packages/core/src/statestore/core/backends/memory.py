"""``memory``: a process-local, thread-safe backend for tests and examples (serves both roles)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from statestore.core.base import CleanupResult, StoredEntry, is_expired
from statestore.core.config import Config
from statestore.core.naming import identity_scope
from statestore.core.primitive import PrimitiveStoreBackend
from statestore.core.scopes import StoreScope, TaskScope

__all__ = ["MemoryStoreBackend"]


class MemoryStoreBackend(PrimitiveStoreBackend):
    """Keeps entries in a dict guarded by a lock; each instance has its own data."""

    name = "memory"
    reference_scheme = "memory"

    def __init__(self, *, config: Config | None = None) -> None:
        super().__init__(config=config)
        self._lock = threading.Lock()
        self._data: dict[StoreScope, dict[str, StoredEntry]] = {}

    def _after_fork_in_child(self) -> None:
        """The child keeps its copy of the data; a lock held by a parent's thread at the fork is replaced."""
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        """A namespace private to this instance."""
        return f"memory://{id(self):x}"

    def _scopes(self, scope: StoreScope, all_map_indices: bool) -> list[StoreScope]:
        if not (all_map_indices and isinstance(scope, TaskScope)):
            return [identity_scope(scope)]
        same_task = (scope.dag_id, scope.run_id, scope.task_id)
        return [s for s in self._data if isinstance(s, TaskScope) and (s.dag_id, s.run_id, s.task_id) == same_task]

    def _get(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        with self._lock:
            return self._data.get(identity_scope(scope), {}).get(key)

    def _set(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        with self._lock:
            self._data.setdefault(identity_scope(scope), {})[key] = StoredEntry(value, expires_at)

    def _delete(self, scope: StoreScope, key: str, session: Any) -> None:
        with self._lock:
            entries = self._data.get(identity_scope(scope))
            if entries is not None:
                entries.pop(key, None)
                if not entries:
                    del self._data[identity_scope(scope)]

    def _clear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        with self._lock:
            for each in self._scopes(scope, all_map_indices):
                self._data.pop(each, None)

    def _keys(self, scope: StoreScope, session: Any) -> list[str]:
        with self._lock:
            return list(self._data.get(identity_scope(scope), {}))

    def _cleanup(self, now: datetime) -> CleanupResult:
        result = CleanupResult()
        with self._lock:
            for scope, entries in list(self._data.items()):
                expired = [k for k, e in entries.items() if is_expired(e.expires_at, now)]
                for key in expired:
                    del entries[key]
                if not entries:
                    del self._data[scope]
                result.add("expired", len(expired))
        return result
