"""``BaseStoreBackend``: the backend contract, call-compatible with Airflow 3.3.2's.

Airflow calls the public methods (``get``/``set``/``delete``/``clear``, their async twins,
``cleanup`` and the four reference hooks). They validate and normalise their arguments once,
here, and delegate to a small set of *primitives* that a backend implements:

* ``_get(scope, key, session) -> StoredEntry | None``
* ``_set(scope, key, value, expires_at, session) -> None``
* ``_delete(scope, key, session) -> None``
* ``_clear(scope, all_map_indices, session) -> None``

and optionally ``_keys`` (listing), ``_cleanup`` (reclaiming expired entries), ``_pop`` /
``_pop_scope`` / ``_get_many`` (see :meth:`BaseStoreBackend.pop`) and the ``_a*`` async
primitives (by default the sync primitive runs in a worker thread, so the event loop is never
blocked). A primitive only ever sees statestore scopes and valid keys, and ``get`` never returns
an entry whose ``expires_at`` has passed, whatever the primitive returns.

Fork safety: right after ``os.fork()``, the child calls ``_after_fork_in_child()`` on every
backend instance the parent had built; a backend holding connections, clients or locks
overrides it to drop them (never to close them: they are the parent's), so the instance works
unchanged in both processes.

Every subclass passes ``issubclass`` against Airflow's own ``BaseStoreBackend`` ABCs (as
Airflow's resolver for ``[state_store] backend`` requires): our base registers itself with them
when they are already imported, else right after Airflow imports them (a tiny import hook that
looks only at those two module names), so the order of imports does not matter.

Worker-side references (the *worker role*; see "Writing a backend" in the core README):
``store_value`` writes a value and returns its reference, ``load_value`` reads it back (only for
the scope and key it was written for, when told them), ``discard_value(s)`` deletes exactly the
value a reference names and ``iter_values`` lists every value the role holds, for reconciliation.
A backend that sets ``versioned_references`` writes every value as a new, write-once *version*
in a namespace its server role never uses, so no delete aimed at an old value can remove a newer
one and one location can serve both roles.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
import weakref
from abc import ABC, ABCMeta, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
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
    "RECONCILE_GRACE",
    "REFERENCE_EXPIRY_MARGIN",
    "BaseStoreBackend",
    "EARLIEST_EXPIRY",
    "LATEST_EXPIRY",
    "CleanupResult",
    "JsonValue",
    "ReferenceNotFoundError",
    "StoredEntry",
    "StoredValue",
    "utcnow",
]

JsonValue = Any
"""A JSON-compatible value: str, int, float, bool, list, or dict with str keys (nested)."""

_LEGACY_TI_NAMESPACE = uuid.UUID("6f3c1f0e-3b1a-5d2e-9c47-2a4f5e6d7c8b")
EARLIEST_EXPIRY = datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
LATEST_EXPIRY = datetime(9999, 1, 1, tzinfo=timezone.utc)
"""The latest ``expires_at`` a backend accepts: room below ``datetime.max`` for margins added to it."""
"""The earliest ``expires_at`` a backend accepts: native expiry (Redis ``PXAT``) needs a positive Unix time."""


class StoredEntry(NamedTuple):
    """What a backend primitive returns for one key: the JSON text and its absolute expiry (or None)."""

    value: str
    expires_at: datetime | None = None


class StoredValue(NamedTuple):
    """One worker-side value listed by :meth:`BaseStoreBackend.iter_values`: its reference and when it was written."""

    reference: str
    written_at: datetime


REFERENCE_EXPIRY_MARGIN = timedelta(days=1)
"""How much later than its server row a versioned worker-side value expires.

``store_value`` gets the row's expiry; a versioned backend records that plus this margin, so a
storage clock running ahead of the writer's can never expire the value before its row.
"""

RECONCILE_GRACE = timedelta(hours=1)
"""Default age under which reconciliation keeps a worker-side value whose row it cannot find (yet)."""


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
    if not EARLIEST_EXPIRY <= expires_at <= LATEST_EXPIRY:
        raise ValueError(
            f"expires_at must be between {EARLIEST_EXPIRY.isoformat()} (stores with native expiry take a positive "
            f"Unix time; any past instant already means expired) and {LATEST_EXPIRY.isoformat()}, got "
            f"{expires_at.isoformat()}"
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
        _LIVE_BACKENDS.add(self)

    def _after_fork_in_child(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Called in a forked child for every live instance: drop what belongs to the parent's process.

        The default does nothing (a backend with no connections, clients or locks of its own).
        """

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

    # -- worker-side references ----------------------------------------------------------------------

    versioned_references: ClassVar[bool] = False
    """True when ``store_value`` writes every value as a new write-once version (see :meth:`store_value`)."""

    @property
    def _scheme(self) -> str:
        """The scheme of this backend's references: ``reference_scheme``, else ``name``, else the class name."""
        return self.reference_scheme or self.name or type(self).__name__.lower()

    def reference_for(self, scope: StoreScope, key: str) -> str:
        """The deterministic reference naming ``(scope, key)`` in this backend's own storage."""
        return f"{self._scheme}://" + "/".join((*scope_path(to_scope(scope)), encode_segment(validate_key(key))))

    def resolve_reference(self, reference: str) -> tuple[StoreScope, str]:
        """The ``(scope, key)`` a reference was written for; ``InvalidReferenceError`` for anything not ours."""
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

    def check_reference(self, reference: str, scope: StoreScope, key: str) -> None:
        """Raise ``InvalidReferenceError`` unless ``reference`` is ours and was written for ``(scope, key)``.

        A reference is honoured only for the scope and key it is read for: a marker copied into
        another row (by a bug, a migration, a hand edit) must not read another scope's value. An
        asset is compared by the identity its references are named after (the first of name,
        URI and id the scope has), so read an asset with the identity it was written under.
        """
        named_scope, named_key = self.resolve_reference(reference)
        wanted = to_scope(scope)
        if named_key != key or scope_path(named_scope) != scope_path(wanted):
            raise InvalidReferenceError(
                f"{type(self).__name__} refuses reference {reference!r} for key {key!r} of {wanted!r}: "
                f"it was written for key {named_key!r} of {named_scope!r}"
            )

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

        Contract: with ``versioned_references``, every call writes a NEW object that is never
        overwritten, named ``<worker namespace>/<scope>/<key>/<version>`` (``naming.new_version``:
        time-ordered, unique), in a namespace the backend's server role never uses; the reference
        names that version. ``expires_at`` is the expiry of the row that will name it (``StateStore``
        passes it); the value records ``expires_at +`` :data:`REFERENCE_EXPIRY_MARGIN`, or, for None,
        no expiry at all (no TTL, no expiry metadata), as for Airflow's hooks, which know no retention.
        A backend may return None (e.g. below a size threshold) only when ``allow_inline``; the
        Airflow hooks pass False because Airflow 3.3.2 wraps whatever the hook returns.

        This default (``versioned_references`` False) writes with :meth:`set` under the
        deterministic :meth:`reference_for`: a later write of the key replaces the value and
        ``StateStore`` refuses one location for both roles.
        """
        if self._keeps_inline(value_json, allow_inline):
            return None
        scope = to_scope(scope)
        self.set(scope, key, value_json, expires_at=expires_at)
        return self.reference_for(scope, key)

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

    def load_value(self, reference: str, *, scope: StoreScope | None = None, key: str | None = None) -> str:
        """Read the JSON text a reference points to; ``ReferenceNotFoundError`` if it is gone.

        With ``scope`` and ``key`` (``StateStore`` always passes the row's), a reference written
        for another scope or key raises ``InvalidReferenceError`` (:meth:`check_reference`)
        before any request is made. References written before versioning stay readable.
        """
        named = self._checked(reference, scope, key)
        return _found(reference, self.get(*named))

    async def aload_value(self, reference: str, *, scope: StoreScope | None = None, key: str | None = None) -> str:
        """Async twin of :meth:`load_value`."""
        named = self._checked(reference, scope, key)
        return _found(reference, await self.aget(*named))

    def _checked(self, reference: str, scope: StoreScope | None, key: str | None) -> tuple[StoreScope, str]:
        """``(scope, key)`` of a reference, checked against the expected ones when given."""
        if (scope is None) != (key is None):
            raise TypeError("load_value takes both scope= and key= (to check the reference against), or neither")
        if scope is not None and key is not None:
            self.check_reference(reference, scope, key)
        return self.resolve_reference(reference)

    def discard_value(self, reference: str) -> None:
        """Delete exactly the value ``reference`` names; a value already gone is not an error.

        ``StateStore`` calls it only after the server row naming the reference is deleted, so a
        crash in between leaves an orphan that reconciliation reclaims, never a row without its
        value. This default deletes the deterministic ``(scope, key)`` of the reference.
        """
        self.delete(*self.resolve_reference(reference))

    async def adiscard_value(self, reference: str) -> None:
        """Async twin of :meth:`discard_value`."""
        await self.adelete(*self.resolve_reference(reference))

    def discard_values(self, references: Iterable[str]) -> dict[str, str]:
        """Discard many references; return ``{reference: reason}`` for those that could not be deleted.

        Backends batch the requests (S3: 1000 names per ``DeleteObjects``, GCS: 100 per batch
        request, Redis: pipelined chunks); a failure of one does not stop the others, and a
        malformed reference is reported, not raised. This default discards one at a time.
        """
        failures: dict[str, str] = {}
        for reference in references:
            try:
                self.discard_value(reference)
            except StateStoreError as exc:
                failures[reference] = str(exc)
        return failures

    async def adiscard_values(self, references: Iterable[str]) -> dict[str, str]:
        """Async twin of :meth:`discard_values`."""
        failures: dict[str, str] = {}
        for reference in references:
            try:
                await self.adiscard_value(reference)
            except StateStoreError as exc:
                failures[reference] = str(exc)
        return failures

    def iter_values(self) -> Iterator[list[StoredValue]]:
        """Yield every worker-side value this backend holds, one page (one listing request) at a time.

        Reconciliation streams these pages and discards the values no server row references any
        more; ``written_at`` (from the version, no extra request) protects values written within the
        grace period, whose rows may not be committed yet. Backends without versioned references
        cannot tell their values from server rows and raise ``NotImplementedError``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not list its worker-side values, so it cannot be reconciled"
        )

    def _refuse_shared_location(self) -> None:
        """Before the first hook write, refuse to share the configured server store's location.

        Inside Airflow the two roles are built apart (``[state_store] backend`` in the API server,
        ``[workers] state_store_backend`` here), so no ``StateStore`` compares them: the worker
        builds the configured server backend once, when it is one of ours, and compares locations
        (``statestore.core.store.check_distinct_roles``).
        A backend with versioned references keeps its values apart and is never refused.
        """
        if self.versioned_references or self.__dict__.get("_roles_checked"):
            return
        from statestore.core.plugins import load_backend
        from statestore.core.store import check_distinct_roles

        try:
            server_class = load_backend(self.config.backend)
        except StateStoreError:  # Airflow's own server backend (not ours): it cannot share our storage names
            server_class = None
        if server_class is not None and issubclass(server_class, BaseStoreBackend):
            check_distinct_roles(server_class(config=self.config), self)
        self._roles_checked = True

    # Airflow 3.3.2's hook names. Airflow knows no retention on this path, so the values they write
    # carry no expiry (their rows' expiry is the server's business; reconciliation reclaims the
    # values whose rows are gone). Airflow wraps whatever the hook returns, so these always store
    # the value (allow_inline=False).
    def serialize_task_state_store_to_ref(self, *, value: JsonValue, key: str, scope: TaskScope) -> str | None:
        """Store a task value in this backend and return its reference (None keeps it inline)."""
        task_scope = to_scope(scope)
        legacy = getattr(self, "serialize_task_store_to_ref", None)
        if legacy is not None:
            return cast("str | None", legacy(value=value, key=key, ti_id=legacy_ti_id(task_scope)))
        self._refuse_shared_location()
        return self.store_value(task_scope, key, encode_value(value), allow_inline=False)

    def deserialize_task_state_store_from_ref(self, stored: str) -> JsonValue:
        """Read back the value a task reference points to; refuse another task's (or an asset's) reference.

        Airflow passes only the reference. It reads the running task instance's store, so a
        reference naming any other task, or an asset, is refused (``InvalidReferenceError``).
        """
        legacy = getattr(self, "deserialize_task_store_from_ref", None)
        if legacy is not None:
            return legacy(stored)
        scope, _ = self.resolve_reference(stored)
        running = _running_task()
        if not isinstance(scope, TaskScope) or (running is not None and scope_path(scope) != scope_path(running)):
            raise InvalidReferenceError(
                f"{type(self).__name__} refuses reference {stored!r} for the task store of "
                f"{running or 'a task'}: it names a value of {scope!r}"
            )
        return decode_value(self.load_value(stored))

    def serialize_asset_state_store_to_ref(self, *, value: JsonValue, key: str, scope: AssetScope) -> str | None:
        """Store an asset value in this backend and return its reference (None keeps it inline)."""
        asset_scope = to_scope(scope)
        legacy = getattr(self, "serialize_asset_store_to_ref", None)
        if legacy is not None:
            return cast("str | None", legacy(value=value, key=key, asset_ref=legacy_asset_ref(asset_scope)))
        self._refuse_shared_location()
        return self.store_value(asset_scope, key, encode_value(value), allow_inline=False)

    def deserialize_asset_state_store_from_ref(self, stored: str) -> JsonValue:
        """Read back the value an asset reference points to; refuse a task's reference."""
        legacy = getattr(self, "deserialize_asset_store_from_ref", None)
        if legacy is not None:
            return legacy(stored)
        scope, _ = self.resolve_reference(stored)
        if not isinstance(scope, AssetScope):
            raise InvalidReferenceError(
                f"{type(self).__name__} refuses reference {stored!r} for an asset store: it names a value of {scope!r}"
            )
        return decode_value(self.load_value(stored))


def _running_task() -> TaskScope | None:
    """The task instance this Airflow worker process is running (Airflow's public ``get_current_context``), if any."""
    if "airflow.sdk" not in sys.modules:
        return None
    try:
        from airflow.sdk import get_current_context

        ti = get_current_context()["ti"]
        return TaskScope(ti.dag_id, ti.run_id, ti.task_id, -1 if ti.map_index is None else ti.map_index)
    except Exception:  # noqa: BLE001 - outside a running task there is no context, and no task to compare with
        return None


_LIVE_BACKENDS: weakref.WeakSet[BaseStoreBackend] = weakref.WeakSet()


def _reset_backends_in_child() -> None:
    """``os.register_at_fork`` hook: each live backend forgets the parent's connections and locks."""
    for backend in list(_LIVE_BACKENDS):
        backend._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_backends_in_child)


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
