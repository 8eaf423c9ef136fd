"""``PrimitiveStoreBackend``: an optional helper base that turns four primitives into Airflow's eight methods.

Subclass :class:`statestore.core.BaseStoreBackend` to implement Airflow's eight methods yourself.
Subclass this instead to implement only

* ``_get(scope, key, session) -> StoredEntry | None``
* ``_set(scope, key, value, expires_at, session) -> None``
* ``_delete(scope, key, session) -> None``
* ``_clear(scope, all_map_indices, session) -> None``

and optionally ``_keys`` (listing), ``_cleanup`` (reclaiming expired entries), ``_pop`` /
``_pop_scope`` / ``_get_many`` (see :meth:`PrimitiveStoreBackend.pop`) and the ``_a*`` async
primitives (by default the sync primitive runs in a worker thread, so the event loop is never
blocked). In exchange the public methods validate and normalise every argument once (Airflow's
scopes become statestore's, keys and values are checked, ``expires_at`` is range-checked), ``get``
never returns an entry whose ``expires_at`` has passed, and ``keys``/``pop``/``pop_scope``/
``get_many`` and a reporting ``cleanup()`` come for free. Every statestore backend builds on it.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from statestore.core.base import BaseStoreBackend, CleanupResult, StoredEntry, is_expired, utcnow
from statestore.core.naming import validate_key
from statestore.core.scopes import StoreScope, to_scope
from statestore.core.values import check_expires_at, check_value

__all__ = ["PrimitiveStoreBackend"]


class PrimitiveStoreBackend(BaseStoreBackend):
    """Implement ``_get``/``_set``/``_delete``/``_clear``; get the validated public API (module docstring)."""

    # -- primitives a subclass implements ---------------------------------------------------------

    @abstractmethod
    def _get(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        """Return the entry stored for ``(scope, key)`` (expired or not), or None."""

    @abstractmethod
    def _set(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        """Write or overwrite ``value`` with its absolute UTC expiry (None = never)."""

    @abstractmethod
    def _delete(self, scope: StoreScope, key: str, session: Any) -> None:
        """Remove one key; a missing key is not an error."""

    @abstractmethod
    def _clear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        """Remove every key of ``scope`` (all map indices of the task when asked)."""

    def _keys(self, scope: StoreScope, session: Any) -> list[str]:
        """List the keys of ``scope``; backends that cannot list raise ``NotImplementedError``."""
        raise NotImplementedError(f"{type(self).__name__} cannot list keys")

    def _cleanup(self, now: datetime) -> CleanupResult:
        """Reclaim entries that expired before ``now``; by default there is nothing to do."""
        return CleanupResult()

    def _pop(self, scope: StoreScope, key: str, session: Any) -> str | None:
        """Delete one key and return the text it held (expired or not); by default a read, then a delete."""
        entry = self._get(scope, key, session)
        self._delete(scope, key, session)
        return None if entry is None else entry.value

    def _pop_scope(self, scope: StoreScope, all_map_indices: bool, session: Any) -> list[str]:
        """Clear ``scope`` and return the texts its keys held; by default listed and read first, then cleared.

        The default finds only the keys ``_keys`` lists (one map index; none when the backend cannot
        list): what it misses is cleared all the same, and reconciliation reclaims their values.
        """
        try:
            keys = self._keys(scope, session)
        except NotImplementedError:
            keys = []
        entries = [self._get(scope, key, session) for key in keys]
        self._clear(scope, all_map_indices, session)
        return [entry.value for entry in entries if entry is not None]

    def _get_many(self, items: Sequence[tuple[StoreScope, str]], session: Any) -> list[str | None]:
        """The text stored for each ``(scope, key)`` (expired or not), in order; by default one ``_get`` each."""
        entries = [self._get(scope, key, session) for scope, key in items]
        return [None if entry is None else entry.value for entry in entries]

    async def _aget(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        return await asyncio.to_thread(self._get, scope, key, session)

    async def _aset(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        await asyncio.to_thread(self._set, scope, key, value, expires_at, session)

    async def _adelete(self, scope: StoreScope, key: str, session: Any) -> None:
        await asyncio.to_thread(self._delete, scope, key, session)

    async def _aclear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        await asyncio.to_thread(self._clear, scope, all_map_indices, session)

    async def _akeys(self, scope: StoreScope, session: Any) -> list[str]:
        return await asyncio.to_thread(self._keys, scope, session)

    async def _apop(self, scope: StoreScope, key: str, session: Any) -> str | None:
        return await asyncio.to_thread(self._pop, scope, key, session)

    async def _apop_scope(self, scope: StoreScope, all_map_indices: bool, session: Any) -> list[str]:
        return await asyncio.to_thread(self._pop_scope, scope, all_map_indices, session)

    # -- the public, Airflow-compatible API --------------------------------------------------------

    def get(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        """Return the stored JSON text, or None if the key is missing or expired."""
        entry = self._get(to_scope(scope), validate_key(key), session)
        return None if entry is None or is_expired(entry.expires_at) else entry.value

    def set(
        self, scope: StoreScope, key: str, value: str, *, expires_at: datetime | None = None, session: Any = None
    ) -> None:
        """Write or overwrite ``value`` (JSON text); ``expires_at`` is an aware UTC datetime or None (never)."""
        self._set(to_scope(scope), validate_key(key), check_value(value), check_expires_at(expires_at), session)

    def delete(self, scope: StoreScope, key: str, *, session: Any = None) -> None:
        """Delete one key; no-op if it does not exist."""
        self._delete(to_scope(scope), validate_key(key), session)

    def clear(self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None) -> None:
        """Delete every key of ``scope``; for a task, one map index unless ``all_map_indices``."""
        self._clear(to_scope(scope), bool(all_map_indices), session)

    def keys(self, scope: StoreScope, *, session: Any = None) -> list[str]:
        """The keys currently stored for ``scope``, sorted (expired ones may appear until cleanup)."""
        return sorted(self._keys(to_scope(scope), session))

    async def aget(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        """Async twin of :meth:`get`."""
        entry = await self._aget(to_scope(scope), validate_key(key), session)
        return None if entry is None or is_expired(entry.expires_at) else entry.value

    async def aset(
        self, scope: StoreScope, key: str, value: str, *, expires_at: datetime | None = None, session: Any = None
    ) -> None:
        """Async twin of :meth:`set`."""
        await self._aset(to_scope(scope), validate_key(key), check_value(value), check_expires_at(expires_at), session)

    async def adelete(self, scope: StoreScope, key: str, *, session: Any = None) -> None:
        """Async twin of :meth:`delete`."""
        await self._adelete(to_scope(scope), validate_key(key), session)

    async def aclear(self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None) -> None:
        """Async twin of :meth:`clear`."""
        await self._aclear(to_scope(scope), bool(all_map_indices), session)

    async def akeys(self, scope: StoreScope, *, session: Any = None) -> list[str]:
        """Async twin of :meth:`keys`."""
        return sorted(await self._akeys(to_scope(scope), session))

    def cleanup(self) -> CleanupResult:
        """Remove expired (and, where the backend tracks them, orphaned) entries; report what went."""
        return self._cleanup(utcnow())

    def pop(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        """Delete one key and return the text it held (expired or not), or None when it was missing.

        ``StateStore.delete`` uses it to discard exactly the worker-side value the deleted row
        named. Backends that can delete and return in one step (the metastore: ``DELETE ...
        RETURNING``) override ``_pop``; the default reads, then deletes, so a ``set`` landing
        in between is deleted too and its worker-side value is left to reconciliation.
        """
        return self._pop(to_scope(scope), validate_key(key), session)

    def pop_scope(self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None) -> list[str]:
        """Clear ``scope`` like :meth:`clear` and return the texts of the keys removed (expired or not)."""
        return self._pop_scope(to_scope(scope), bool(all_map_indices), session)

    async def apop(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        """Async twin of :meth:`pop`."""
        return await self._apop(to_scope(scope), validate_key(key), session)

    async def apop_scope(self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None) -> list[str]:
        """Async twin of :meth:`pop_scope`."""
        return await self._apop_scope(to_scope(scope), bool(all_map_indices), session)

    def get_many(self, items: Iterable[tuple[StoreScope, str]], *, session: Any = None) -> list[str | None]:
        """The text stored for each ``(scope, key)`` of ``items`` (expired or not; None when missing), in order.

        Reconciliation asks it, a page at a time, which rows still hold a reference; the
        metastore answers a page with one query per table, the default with one ``_get`` each.
        """
        pairs = [(to_scope(scope), validate_key(key)) for scope, key in items]
        return self._get_many(pairs, session)
