"""``BaseStoreBackend``: the backend contract, call-compatible with Airflow 3.3.2's.

Airflow calls the public methods (``get``/``set``/``delete``/``clear``, their async twins,
``cleanup`` and the four reference hooks). They validate and normalise their arguments once,
here, and delegate to a small set of *primitives* that a backend implements:

* ``_get(scope, key, session) -> StoredEntry | None``
* ``_set(scope, key, value, expires_at, session) -> None``
* ``_delete(scope, key, session) -> None``
* ``_clear(scope, all_map_indices, session) -> None``

and optionally ``_keys`` (listing), ``_cleanup`` (reclaiming expired entries) and the ``_a*``
async primitives (by default the sync primitive runs in a worker thread, so the event loop is
never blocked). A primitive only ever sees statestore scopes and valid keys, and ``get`` never
returns an entry whose ``expires_at`` has passed, whatever the primitive returns.

Every subclass passes ``issubclass`` against Airflow's own ``BaseStoreBackend`` ABCs (as
Airflow's resolver for ``[state_store] backend`` requires): our base registers itself with them
when they are already imported, else right after Airflow imports them (a tiny import hook that
looks only at those two module names), so the order of imports does not matter.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from abc import ABC, ABCMeta, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, cast

from statestore.core.errors import InvalidReferenceError, StateStoreError
from statestore.core.naming import encode_segment, parse_path, scope_path, validate_key
from statestore.core.scopes import AssetScope, StoreScope, TaskScope, to_scope
from statestore.core.values import check_value_text, decode_value, encode_value

if TYPE_CHECKING:
    from statestore.core.config import Config

__all__ = [
    "BaseStoreBackend",
    "EARLIEST_EXPIRY",
    "CleanupResult",
    "JsonValue",
    "ReferenceNotFoundError",
    "StoredEntry",
    "utcnow",
]

JsonValue = Any
"""A JSON-compatible value: str, int, float, bool, list, or dict with str keys (nested)."""

_LEGACY_TI_NAMESPACE = uuid.UUID("6f3c1f0e-3b1a-5d2e-9c47-2a4f5e6d7c8b")
EARLIEST_EXPIRY = datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
"""The earliest ``expires_at`` a backend accepts: native expiry (Redis ``PXAT``) needs a positive Unix time."""


class StoredEntry(NamedTuple):
    """What a backend primitive returns for one key: the JSON text and its absolute expiry (or None)."""

    value: str
    expires_at: datetime | None = None


@dataclass
class CleanupResult:
    """What ``cleanup()`` removed, in total and by kind (e.g. ``{"expired_task": 10}``)."""

    removed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, count: int) -> None:
        """Count ``count`` more removed entries of ``kind``."""
        self.removed += count
        self.by_kind[kind] = self.by_kind.get(kind, 0) + count


class ReferenceNotFoundError(StateStoreError, KeyError):
    """A reference is well-formed, but the value it points to is gone (expired or deleted)."""


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the one clock every expiry is compared with)."""
    return datetime.now(timezone.utc)


def _check_expires_at(expires_at: Any) -> datetime | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime):
        raise TypeError(f"expires_at must be an aware datetime or None, got {type(expires_at).__name__}")
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise ValueError("expires_at must be timezone-aware (UTC); got a naive datetime")
    if expires_at < EARLIEST_EXPIRY:
        raise ValueError(
            f"expires_at must not be before {EARLIEST_EXPIRY.isoformat()} (stores with native expiry take a "
            f"positive Unix time), got {expires_at.isoformat()}; any instant in the past already means expired"
        )
    return expires_at.astimezone(timezone.utc)


def _check_value(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"backend values are JSON text (str), got {type(value).__name__}; use StateStore for objects")
    check_value_text(value)
    return value


def is_expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    """True when ``expires_at`` is set and not in the future."""
    return expires_at is not None and expires_at <= (now or utcnow())


_AIRFLOW_STATE_MODULES = ("airflow._shared.state", "airflow.sdk._shared.state")


def _register_with(module: ModuleType) -> None:
    """Register our base class with the ``BaseStoreBackend`` ABC of one of Airflow's state modules.

    Airflow's server-side resolver checks ``issubclass`` against its own ABC; registering our base
    as a virtual subclass makes every statestore backend pass (ABCs consult their registry).
    """
    airflow_base = getattr(module, "BaseStoreBackend", None)
    if isinstance(airflow_base, ABCMeta):
        airflow_base.register(BaseStoreBackend)  # type: ignore[type-abstract]


class _RegisteringLoader(Loader):
    """Wraps the loader of an Airflow state module to register our base class right after it runs."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _register_with(module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, resource readers, ...
        return getattr(self._loader, name)


class _AirflowWatcher(MetaPathFinder):
    """Catches the import of Airflow's state modules when statestore was imported before Airflow."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in _AIRFLOW_STATE_MODULES:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = None if finder is self or find is None else find(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _RegisteringLoader(spec.loader)
            return cast("ModuleSpec", spec)
        return None


def _register_with_airflow() -> None:
    """Register with Airflow's state modules already imported, and watch for the others."""
    pending = False
    for name in _AIRFLOW_STATE_MODULES:
        module = sys.modules.get(name)
        if module is None:
            pending = True
        else:
            _register_with(module)
    if pending and not any(isinstance(finder, _AirflowWatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AirflowWatcher())


class BaseStoreBackend(ABC):
    """Abstract task/asset state store; see the module docstring for what a subclass implements.

    ``name`` is the short plugin name and ``reference_scheme`` prefixes the default references
    (``<scheme>://task/<dag>/<run>/<task>/<map_index>/<key>``).
    """

    name: ClassVar[str] = ""
    reference_scheme: ClassVar[str] = ""

    def __init__(self, *, config: Config | None = None) -> None:
        if config is None:
            from statestore.core.config import load_config

            config = load_config()
        self.config = config

    def __repr__(self) -> str:
        location = getattr(self, "location", None)  # None too for an instance whose __init__ failed midway
        return f"{type(self).__name__}({location!r})" if location else f"{type(self).__name__}()"

    @property
    def location(self) -> str | None:
        """Where this backend keeps data (``s3://bucket/prefix``), secrets removed; None if unknown.

        ``StateStore`` refuses one location for both roles, where server rows and referenced values
        would overwrite each other.
        """
        return None

    # -- primitives a backend implements ---------------------------------------------------------

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

    # -- the public, Airflow-compatible API --------------------------------------------------------

    def get(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        """Return the stored JSON text, or None if the key is missing or expired."""
        entry = self._get(to_scope(scope), validate_key(key), session)
        return None if entry is None or is_expired(entry.expires_at) else entry.value

    def set(
        self, scope: StoreScope, key: str, value: str, *, expires_at: datetime | None = None, session: Any = None
    ) -> None:
        """Write or overwrite ``value`` (JSON text); ``expires_at`` is an aware UTC datetime or None (never)."""
        self._set(to_scope(scope), validate_key(key), _check_value(value), _check_expires_at(expires_at), session)

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
        await self._aset(
            to_scope(scope), validate_key(key), _check_value(value), _check_expires_at(expires_at), session
        )

    async def adelete(self, scope: StoreScope, key: str, *, session: Any = None) -> None:
        """Async twin of :meth:`delete`."""
        await self._adelete(to_scope(scope), validate_key(key), session)

    async def aclear(self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None) -> None:
        """Async twin of :meth:`clear`."""
        await self._aclear(to_scope(scope), bool(all_map_indices), session)

    async def akeys(self, scope: StoreScope, *, session: Any = None) -> list[str]:
        """Async twin of :meth:`keys`."""
        return sorted(await self._akeys(to_scope(scope), session))

    def cleanup(self) -> CleanupResult:  # type: ignore[override]
        """Remove expired (and, where the backend tracks them, orphaned) entries; report what went."""
        return self._cleanup(utcnow())

    # -- worker-side references ----------------------------------------------------------------------

    @property
    def _scheme(self) -> str:
        """The scheme of this backend's references: ``reference_scheme``, else ``name``, else the class name."""
        return self.reference_scheme or self.name or type(self).__name__.lower()

    def reference_for(self, scope: StoreScope, key: str) -> str:
        """The deterministic reference naming ``(scope, key)`` in this backend's own storage."""
        return f"{self._scheme}://" + "/".join((*scope_path(to_scope(scope)), encode_segment(validate_key(key))))

    def resolve_reference(self, reference: str) -> tuple[StoreScope, str]:
        """Invert :meth:`reference_for`; raise ``InvalidReferenceError`` for anything it did not produce."""
        prefix = f"{self._scheme}://"
        if not isinstance(reference, str) or not reference.startswith(prefix):
            raise InvalidReferenceError(
                f"{type(self).__name__} refuses reference {reference!r}: it does not start with {prefix!r}"
            )
        try:
            return parse_path(reference[len(prefix) :].split("/"))
        except ValueError as exc:
            raise InvalidReferenceError(
                f"{type(self).__name__} refuses malformed reference {reference!r}: {exc}"
            ) from exc

    def _keeps_inline(self, value_json: str, allow_inline: bool) -> bool:
        """Whether ``store_value`` keeps this value inline; never, unless a backend says so."""
        return False

    def store_value(
        self,
        scope: StoreScope,
        key: str,
        value_json: str,
        *,
        expires_at: datetime | None = None,
        allow_inline: bool = True,
    ) -> str | None:
        """Write a worker-side value and return its reference, or None to keep the value inline.

        A backend may return None (e.g. below a size threshold) only when ``allow_inline``; the
        Airflow hooks pass False because Airflow 3.3.2 wraps whatever the hook returns.
        """
        if self._keeps_inline(value_json, allow_inline):
            return None
        scope = to_scope(scope)
        self.set(scope, key, value_json, expires_at=expires_at)
        return self.reference_for(scope, key)

    def load_value(self, reference: str) -> str:
        """Read the JSON text a reference points to; ``ReferenceNotFoundError`` if it is gone."""
        scope, key = self.resolve_reference(reference)
        return _found(reference, self.get(scope, key))

    async def astore_value(
        self,
        scope: StoreScope,
        key: str,
        value_json: str,
        *,
        expires_at: datetime | None = None,
        allow_inline: bool = True,
    ) -> str | None:
        """Async twin of :meth:`store_value`."""
        if self._keeps_inline(value_json, allow_inline):
            return None
        scope = to_scope(scope)
        await self.aset(scope, key, value_json, expires_at=expires_at)
        return self.reference_for(scope, key)

    async def aload_value(self, reference: str) -> str:
        """Async twin of :meth:`load_value`."""
        scope, key = self.resolve_reference(reference)
        return _found(reference, await self.aget(scope, key))

    def _default_task_expiry(self) -> datetime | None:
        days = self.config.default_retention_days
        return None if days == 0 else utcnow() + timedelta(days=days)

    # Airflow 3.3.2's hook names. Airflow passes no expiry, so a task value gets
    # ``default_retention_days``; asset values never expire. Airflow wraps whatever the hook
    # returns, so these always store the value (allow_inline=False).
    def serialize_task_state_store_to_ref(self, *, value: JsonValue, key: str, scope: TaskScope) -> str | None:
        """Store a task value in this backend and return its reference (None keeps it inline)."""
        task_scope = to_scope(scope)
        legacy = getattr(self, "serialize_task_store_to_ref", None)
        if legacy is not None:
            return cast("str | None", legacy(value=value, key=key, ti_id=legacy_ti_id(task_scope)))
        return self.store_value(
            task_scope, key, encode_value(value), expires_at=self._default_task_expiry(), allow_inline=False
        )

    def deserialize_task_state_store_from_ref(self, stored: str) -> JsonValue:
        """Read back the value a task reference points to."""
        legacy = getattr(self, "deserialize_task_store_from_ref", None)
        return legacy(stored) if legacy is not None else decode_value(self.load_value(stored))

    def serialize_asset_state_store_to_ref(self, *, value: JsonValue, key: str, scope: AssetScope) -> str | None:
        """Store an asset value in this backend and return its reference (None keeps it inline)."""
        asset_scope = to_scope(scope)
        legacy = getattr(self, "serialize_asset_store_to_ref", None)
        if legacy is not None:
            return cast("str | None", legacy(value=value, key=key, asset_ref=legacy_asset_ref(asset_scope)))
        return self.store_value(asset_scope, key, encode_value(value), allow_inline=False)

    def deserialize_asset_state_store_from_ref(self, stored: str) -> JsonValue:
        """Read back the value an asset reference points to."""
        legacy = getattr(self, "deserialize_asset_store_from_ref", None)
        return legacy(stored) if legacy is not None else decode_value(self.load_value(stored))


def _found(reference: str, value: str | None) -> str:
    """``value`` read through ``reference``, or ``ReferenceNotFoundError`` when it is gone."""
    if value is None:
        raise ReferenceNotFoundError(f"the value behind {reference!r} no longer exists (expired or deleted)")
    return value


def legacy_ti_id(scope: StoreScope) -> uuid.UUID:
    """A deterministic UUID standing in for the task-instance id that the older hooks received."""
    return uuid.uuid5(_LEGACY_TI_NAMESPACE, "/".join(scope_path(scope)))


def legacy_asset_ref(scope: StoreScope) -> str:
    """The asset reference string that the older hooks received: its name, else its uri, else its id."""
    assert isinstance(scope, AssetScope)
    return scope.name or scope.uri or str(scope.asset_id)


_register_with_airflow()
