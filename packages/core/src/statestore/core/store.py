"""``StateStore``: the worker-facing task and asset store API on a server-side and an optional worker-side backend.

Values are JSON-compatible Python objects (validated by :func:`statestore.core.values.encode_value`;
a rejected value or key writes nothing). Without a worker-side backend the JSON text is stored
inline in the server-side backend, limited to ``[state_store] max_value_storage_bytes``. With one,
``set`` writes the value through the worker backend's ``store_value`` and stores only the marker
``{"__airflow_state_ref__": "<reference>"}`` on the server (Airflow 3.3's format); a worker backend
may return ``None`` to keep a (small) value inline. ``delete``/``clear`` remove the server row
first, then the external object, so a crash in between leaves an orphan object that the next
``set`` of the key overwrites (references are deterministic) and that ``clear`` removes.

Escaping: an inline value that is a dict containing ``"__airflow_state_ref__"`` or
``"__statestore_escaped__"`` is stored as ``{"__statestore_escaped__": value}`` and unwrapped on
read, so no user value is ever mistaken for a reference (or for an escaped value).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from typing import Any

from statestore.core.base import BaseStoreBackend, CleanupResult, JsonValue, ReferenceNotFoundError, utcnow
from statestore.core.config import MAX_RETENTION_DAYS, Config, load_config
from statestore.core.errors import ConfigurationError, InvalidReferenceError, StateStoreError, ValueTooLargeError
from statestore.core.naming import validate_key
from statestore.core.plugins import load_backend
from statestore.core.scopes import NEVER_EXPIRE, AssetScope, StoreScope, TaskScope, to_scope
from statestore.core.values import decode_value, encode_value

__all__ = [
    "ESCAPE_MARKER",
    "REF_MARKER",
    "AssetStoreAccessor",
    "AssetStoreAccessors",
    "StateStore",
    "TaskStoreAccessor",
]

log = logging.getLogger(__name__)

REF_MARKER = "__airflow_state_ref__"
"""Key of the server-side marker ``{"__airflow_state_ref__": ref}`` standing for an externally stored value."""
ESCAPE_MARKER = "__statestore_escaped__"
"""Key wrapping an inline user value that would otherwise look like a marker."""

BackendArg = BaseStoreBackend | str | type[BaseStoreBackend] | None
_MAX_RETENTION = timedelta(days=MAX_RETENTION_DAYS)


def _resolve_backend(spec: BaseStoreBackend | str | type[BaseStoreBackend], config: Config) -> BaseStoreBackend:
    if isinstance(spec, BaseStoreBackend):
        return spec
    if isinstance(spec, (str, type)):
        return load_backend(spec)(config=config)
    raise TypeError(f"a backend is an instance, a plugin name or a class path, got {type(spec).__name__}")


def _expires_at(retention: Any, default: timedelta | None) -> datetime | None:
    """Absolute UTC expiry for ``retention`` (``timedelta``, ``NEVER_EXPIRE`` or None = ``default``, None = never)."""
    if retention is None:
        return None if default is None else utcnow() + default
    if retention is NEVER_EXPIRE:
        return None
    if isinstance(retention, timedelta):
        if retention <= timedelta(0):
            raise ValueError(f"retention must be positive, got {retention!r}; use delete() to remove a key")
        if retention > _MAX_RETENTION:
            raise ValueError(
                f"retention is limited to {MAX_RETENTION_DAYS} days (100 years), got {retention!r}; "
                "use NEVER_EXPIRE for a value that should never expire"
            )
        return utcnow() + retention
    raise TypeError(
        f"retention must be a datetime.timedelta, NEVER_EXPIRE or None, got {type(retention).__name__} "
        f"{retention!r}; write e.g. retention=timedelta(days={retention!r})"
        if isinstance(retention, int)
        else f"retention must be a datetime.timedelta, NEVER_EXPIRE or None, got {type(retention).__name__}"
    )


def _reference_in(value: Any) -> str | None:
    """The reference if ``value`` is a server-side marker, else None."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(REF_MARKER), str):
        return str(value[REF_MARKER])
    return None


def _escape(value: JsonValue) -> JsonValue:
    if isinstance(value, dict) and (REF_MARKER in value or ESCAPE_MARKER in value):
        return {ESCAPE_MARKER: value}
    return value


def _unescape(value: JsonValue) -> JsonValue:
    if isinstance(value, dict) and len(value) == 1 and ESCAPE_MARKER in value:
        return value[ESCAPE_MARKER]
    return value


class StateStore:
    """Task and asset stores for workers and plain Python; see the module docstring.

    ``backend`` (server side) and ``worker_backend`` are each an instance, a plugin name or a
    class path; ``None`` reads ``[state_store] backend`` / ``[workers] state_backend`` (empty = no
    worker-side backend: values stay inline, as in Airflow).
    """

    def __init__(
        self,
        backend: BackendArg = None,
        worker_backend: BackendArg = None,
        config: Config | None = None,
    ) -> None:
        self.config = config if config is not None else load_config()
        # Read once: a Config does not change, and these are consulted on every write.
        days = self.config.default_retention_days
        self._default_retention = None if days == 0 else timedelta(days=days)
        self._inline_limit = self.config.max_value_storage_bytes
        self.backend = _resolve_backend(backend if backend is not None else self.config.backend, self.config)
        worker = worker_backend if worker_backend is not None else self.config.worker_backend
        self.worker_backend = None if worker is None else _resolve_backend(worker, self.config)
        if self.worker_backend is not None:
            location = self.backend.location
            if location is not None and location == self.worker_backend.location:
                raise ConfigurationError(
                    f"the server-side backend and the worker-side backend both store in {location}; "
                    "references and the values they point to would overwrite each other. "
                    "Give the worker-side backend its own location (another bucket, prefix, path or database)."
                )

    @classmethod
    def from_config(cls, config: Config | None = None) -> StateStore:
        """A store built from configuration alone (``[state_store]`` and ``[workers]``)."""
        return cls(config=config)

    def __repr__(self) -> str:
        return f"StateStore(backend={self.backend!r}, worker_backend={self.worker_backend!r})"

    # -- accessors -------------------------------------------------------------------------------------

    def task_store(
        self, dag_id: str | TaskScope, run_id: str | None = None, task_id: str | None = None, map_index: int = -1
    ) -> TaskStoreAccessor:
        """The store of one task instance (``dag_id`` may also be a ``TaskScope``)."""
        if isinstance(dag_id, str):
            scope = TaskScope(dag_id, run_id or "", task_id or "", map_index)
        else:
            scope = to_scope(dag_id)  # type: ignore[assignment]
            if not isinstance(scope, TaskScope):
                raise TypeError(f"task_store() needs task ids or a TaskScope, got {dag_id!r}")
        return TaskStoreAccessor(self, scope)

    @contextmanager
    def task_attempt(
        self,
        dag_id: str | TaskScope,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int = -1,
        *,
        clear_on_success: bool | None = None,
    ) -> Iterator[TaskStoreAccessor]:
        """One attempt of a task: yields its store; a clean exit clears it when ``clear_on_success``.

        ``clear_on_success`` defaults to ``[state_store] clear_on_success``. An exception leaves
        everything in place for the retry.
        """
        store = self.task_store(dag_id, run_id, task_id, map_index)
        yield store
        if self._clears_on_success(clear_on_success):
            store.clear()

    @asynccontextmanager
    async def atask_attempt(
        self,
        dag_id: str | TaskScope,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int = -1,
        *,
        clear_on_success: bool | None = None,
    ) -> AsyncIterator[TaskStoreAccessor]:
        """Async twin of :meth:`task_attempt`."""
        store = self.task_store(dag_id, run_id, task_id, map_index)
        yield store
        if self._clears_on_success(clear_on_success):
            await store.aclear()

    def _clears_on_success(self, override: bool | None) -> bool:
        return self.config.clear_on_success if override is None else override

    def asset_store(
        self, name: Any = None, uri: str | None = None, *, asset_id: int | None = None
    ) -> AssetStoreAccessor:
        """The store of one asset, by name, URI or id (``name`` may also be an ``AssetScope`` or Airflow ``Asset``)."""
        if name is not None and not isinstance(name, str):
            return AssetStoreAccessor(self, _asset_scope(name))
        return AssetStoreAccessor(self, AssetScope(asset_id=asset_id, name=name, uri=uri))

    def asset_stores(self, inlets: Iterable[Any] = (), outlets: Iterable[Any] = ()) -> AssetStoreAccessors:
        """Stores of the assets a task declares; ``assets[x]`` picks one, the shorthand works with exactly one."""
        return AssetStoreAccessors(self, [*inlets, *outlets])

    # -- the value flow ------------------------------------------------------------------------------

    def _expiry(self, retention: Any) -> datetime | None:
        return _expires_at(retention, self._default_retention)

    def _inline_text(self, key: str, value: JsonValue, text: str) -> str:
        """The server-side text of an inline value (``text`` is its JSON), escaped and within the limit."""
        escaped = _escape(value)
        if escaped is not value:
            text = encode_value(escaped)
        limit = self._inline_limit
        size = len(text.encode("utf-8")) if limit and len(text) * 4 > limit else 0
        if size > limit:
            raise ValueTooLargeError(
                f"value for key {key!r} is {size} bytes of JSON, above the inline limit of {limit} bytes "
                "([state_store] max_value_storage_bytes). Configure a worker-side backend "
                "([workers] state_backend, e.g. 'local', 's3', 'gcs' or 'redis') to store large values outside "
                "the server-side store, or raise the limit (0 = no limit)."
            )
        return text

    def _require_worker(self, key: str, reference: str) -> BaseStoreBackend:
        if self.worker_backend is None:
            raise StateStoreError(
                f"key {key!r} holds a reference to a value stored by a worker-side backend ({reference!r}), "
                "but no worker-side backend is configured; set [workers] state_backend (or pass worker_backend=) "
                "to the backend that wrote it"
            )
        return self.worker_backend

    def _decoded(self, key: str, text: str) -> tuple[str | None, JsonValue]:
        """``(reference, None)`` for a marker, else ``(None, value)``."""
        value = decode_value(text)
        reference = _reference_in(value)
        return (reference, None) if reference is not None else (None, _unescape(value))

    def _get(self, scope: StoreScope, key: str, default: JsonValue) -> JsonValue:
        text = self.backend.get(scope, key)  # validates the key
        if text is None:
            return default
        reference, value = self._decoded(key, text)
        if reference is None:
            return value
        try:
            return decode_value(self._require_worker(key, reference).load_value(reference))
        except ReferenceNotFoundError:
            return default

    async def _aget(self, scope: StoreScope, key: str, default: JsonValue) -> JsonValue:
        text = await self.backend.aget(scope, key)  # validates the key
        if text is None:
            return default
        reference, value = self._decoded(key, text)
        if reference is None:
            return value
        try:
            return decode_value(await self._require_worker(key, reference).aload_value(reference))
        except ReferenceNotFoundError:
            return default

    def _set(self, scope: StoreScope, key: str, value: JsonValue, expires_at: datetime | None) -> None:
        key, text = validate_key(key), encode_value(value)
        if self.worker_backend is not None:
            reference = self.worker_backend.store_value(scope, key, text, expires_at=expires_at, allow_inline=True)
            if reference is not None:
                self.backend.set(scope, key, encode_value({REF_MARKER: reference}), expires_at=expires_at)
                return
        self.backend.set(scope, key, self._inline_text(key, value, text), expires_at=expires_at)

    async def _aset(self, scope: StoreScope, key: str, value: JsonValue, expires_at: datetime | None) -> None:
        key, text = validate_key(key), encode_value(value)
        if self.worker_backend is not None:
            reference = await self.worker_backend.astore_value(
                scope, key, text, expires_at=expires_at, allow_inline=True
            )
            if reference is not None:
                await self.backend.aset(scope, key, encode_value({REF_MARKER: reference}), expires_at=expires_at)
                return
        await self.backend.aset(scope, key, self._inline_text(key, value, text), expires_at=expires_at)

    def _delete(self, scope: StoreScope, key: str) -> None:
        self.backend.delete(scope, key)
        if self.worker_backend is not None:
            self.worker_backend.delete(scope, key)

    async def _adelete(self, scope: StoreScope, key: str) -> None:
        await self.backend.adelete(scope, key)
        if self.worker_backend is not None:
            await self.worker_backend.adelete(scope, key)

    def _clear(self, scope: StoreScope, all_map_indices: bool = False) -> None:
        self.backend.clear(scope, all_map_indices=all_map_indices)
        if self.worker_backend is not None:
            self.worker_backend.clear(scope, all_map_indices=all_map_indices)

    async def _aclear(self, scope: StoreScope, all_map_indices: bool = False) -> None:
        await self.backend.aclear(scope, all_map_indices=all_map_indices)
        if self.worker_backend is not None:
            await self.worker_backend.aclear(scope, all_map_indices=all_map_indices)

    # -- maintenance ---------------------------------------------------------------------------------

    def cleanup(self, *, dry_run: bool = False, progress: Callable[[str, int], None] | None = None) -> CleanupResult:
        """Remove expired entries (and inactive assets' state on the metastore); report what went.

        With a worker-side backend, expired server rows holding references take their external
        objects with them (``by_kind["external_objects"]`` counts those, outside ``removed``).
        ``dry_run`` and ``progress`` need a store that can count: the metastore and the object stores.
        """
        from statestore.core.metastore import MetastoreStoreBackend

        if not isinstance(self.backend, MetastoreStoreBackend):
            if "dry_run" in inspect.signature(self.backend.cleanup).parameters:  # object stores count and report
                return self.backend.cleanup(dry_run=dry_run, progress=progress)  # type: ignore[call-arg]
            if dry_run:
                raise StateStoreError(
                    f"{type(self.backend).__name__} cannot count what clean would remove (its cleanup has no "
                    "dry run); run clean without --dry-run to remove expired entries"
                )
            return self.backend.cleanup()
        external = [0]

        def remove_external(values: list[str]) -> None:
            external[0] += self._remove_referenced(values)

        on_references = None if self.worker_backend is None else remove_external
        result = self.backend.cleanup(dry_run=dry_run, on_references=on_references, progress=progress)
        if on_references is not None and not dry_run:
            result.by_kind["external_objects"] = external[0]
        return result

    def _remove_referenced(self, values: list[str]) -> int:
        """Delete the external objects that these server-side markers point to; return how many were named."""
        assert self.worker_backend is not None
        removed = 0
        for text in values:
            reference = _reference_in(decode_value(text))
            if reference is None:
                continue
            try:
                scope, key = self.worker_backend.resolve_reference(reference)
            except InvalidReferenceError as exc:
                log.warning("cleanup left an external object alone: %s", exc)
                continue
            self.worker_backend.delete(scope, key)
            removed += 1
        return removed


def _asset_scope(asset: Any) -> AssetScope:
    """An ``AssetScope`` from a name string, an ``AssetScope`` or anything with ``name``/``uri``/``asset_id``."""
    if isinstance(asset, str):
        return AssetScope(name=asset)
    try:
        scope = to_scope(asset)
    except TypeError:
        raise TypeError(
            f"an asset is a name string, an AssetScope or an object with name/uri (e.g. an Airflow Asset), "
            f"got {type(asset).__name__}"
        ) from None
    if not isinstance(scope, AssetScope):
        raise TypeError(f"expected an asset, got a task scope {scope!r}")
    return scope


class _ScopedAccessor:
    """What task and asset accessors share: reading, deleting and listing keys of one scope."""

    scope: StoreScope

    def __init__(self, store: StateStore, scope: StoreScope) -> None:
        self.store = store
        self.scope = scope

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scope!r})"

    def get(self, key: str, default: JsonValue = None) -> JsonValue:
        """The value of ``key``, or ``default`` when missing or expired."""
        return self.store._get(self.scope, key, default)

    def delete(self, key: str) -> None:
        """Remove ``key`` (server row first, then any external object); no-op when missing."""
        self.store._delete(self.scope, key)  # the server-side backend validates the key first

    def keys(self) -> list[str]:
        """The keys currently stored, sorted."""
        return self.store.backend.keys(self.scope)

    async def aget(self, key: str, default: JsonValue = None) -> JsonValue:
        """Async twin of :meth:`get`."""
        return await self.store._aget(self.scope, key, default)

    async def adelete(self, key: str) -> None:
        """Async twin of :meth:`delete`."""
        await self.store._adelete(self.scope, key)  # the server-side backend validates the key first

    async def akeys(self) -> list[str]:
        """Async twin of :meth:`keys`."""
        return await self.store.backend.akeys(self.scope)


class TaskStoreAccessor(_ScopedAccessor):
    """Key/value state of one task instance: external job ids, checkpoints, progress."""

    scope: TaskScope

    def set(self, key: str, value: JsonValue, *, retention: timedelta | Any = None) -> None:
        """Store ``value``; ``retention`` is a ``timedelta``, ``NEVER_EXPIRE`` or None (configured default)."""
        self.store._set(self.scope, key, value, self.store._expiry(retention))

    def clear(self, *, all_map_indices: bool = False) -> None:
        """Remove every key of this task instance (of every map index when asked)."""
        self.store._clear(self.scope, all_map_indices)

    async def aset(self, key: str, value: JsonValue, *, retention: timedelta | Any = None) -> None:
        """Async twin of :meth:`set`."""
        await self.store._aset(self.scope, key, value, self.store._expiry(retention))

    async def aclear(self, *, all_map_indices: bool = False) -> None:
        """Async twin of :meth:`clear`."""
        await self.store._aclear(self.scope, all_map_indices)


class AssetStoreAccessor(_ScopedAccessor):
    """Key/value state of one asset (watermarks, cursors); it never expires."""

    scope: AssetScope

    def set(self, key: str, value: JsonValue) -> None:
        """Store ``value`` (asset state has no retention)."""
        self.store._set(self.scope, key, value, None)

    def clear(self) -> None:
        """Remove every key of this asset."""
        self.store._clear(self.scope)

    async def aset(self, key: str, value: JsonValue) -> None:
        """Async twin of :meth:`set`."""
        await self.store._aset(self.scope, key, value, None)

    async def aclear(self) -> None:
        """Async twin of :meth:`clear`."""
        await self.store._aclear(self.scope)


def _label(scope: AssetScope) -> str:
    return repr(scope.name or scope.uri or scope.asset_id)


def _same_asset(declared: AssetScope, wanted: AssetScope, by_string: bool) -> bool:
    if by_string:  # a bare string may be the asset's name or its URI
        return wanted.name in (declared.name, declared.uri)
    return any(
        getattr(wanted, f) is not None and getattr(wanted, f) == getattr(declared, f)
        for f in ("name", "uri", "asset_id")
    )


class AssetStoreAccessors:
    """The asset stores of a task's declared inlets and outlets.

    ``assets[x]`` takes a name (or URI) string, an ``AssetScope`` or an object with ``name``/``uri``
    (an Airflow ``Asset``); an undeclared asset raises ``KeyError``. ``get``/``set``/``delete``/
    ``clear`` (and async twins) on this object itself work only when exactly one asset is declared.
    """

    def __init__(self, store: StateStore, assets: Iterable[Any]) -> None:
        self.store = store
        self._scopes: list[AssetScope] = []
        for each in assets:
            scope = _asset_scope(each)
            if not any(_same_asset(known, scope, False) for known in self._scopes):
                self._scopes.append(scope)

    def __repr__(self) -> str:
        return f"AssetStoreAccessors([{', '.join(_label(s) for s in self._scopes)}])"

    def __len__(self) -> int:
        return len(self._scopes)

    def __iter__(self) -> Iterator[AssetStoreAccessor]:
        return (AssetStoreAccessor(self.store, scope) for scope in self._scopes)

    def __getitem__(self, asset: Any) -> AssetStoreAccessor:
        wanted = _asset_scope(asset)
        for scope in self._scopes:
            if _same_asset(scope, wanted, isinstance(asset, str)):
                return AssetStoreAccessor(self.store, scope)
        declared = ", ".join(_label(s) for s in self._scopes) or "none"
        raise KeyError(f"asset {_label(wanted)} is not among this task's inlets and outlets (declared: {declared})")

    def _single(self) -> AssetStoreAccessor:
        if len(self._scopes) != 1:
            declared = ", ".join(_label(s) for s in self._scopes) or "none"
            raise ValueError(
                f"the asset shorthand needs exactly one declared asset, but there are {len(self._scopes)} "
                f"({declared}); pick one with assets['<name>'] or assets[Asset(...)]"
            )
        return AssetStoreAccessor(self.store, self._scopes[0])

    def get(self, key: str, default: JsonValue = None) -> JsonValue:
        """``get`` on the only declared asset."""
        return self._single().get(key, default)

    def set(self, key: str, value: JsonValue) -> None:
        """``set`` on the only declared asset."""
        self._single().set(key, value)

    def delete(self, key: str) -> None:
        """``delete`` on the only declared asset."""
        self._single().delete(key)

    def clear(self) -> None:
        """``clear`` on the only declared asset."""
        self._single().clear()

    async def aget(self, key: str, default: JsonValue = None) -> JsonValue:
        """``aget`` on the only declared asset."""
        return await self._single().aget(key, default)

    async def aset(self, key: str, value: JsonValue) -> None:
        """``aset`` on the only declared asset."""
        await self._single().aset(key, value)

    async def adelete(self, key: str) -> None:
        """``adelete`` on the only declared asset."""
        await self._single().adelete(key)

    async def aclear(self) -> None:
        """``aclear`` on the only declared asset."""
        await self._single().aclear()
