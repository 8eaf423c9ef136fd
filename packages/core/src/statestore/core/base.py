"""The backend contract: Airflow 3.3.2's ``BaseStoreBackend``, exactly (see "Writing a backend" in the core README).

:class:`BaseStoreBackend` declares abstract exactly the eight methods Airflow documents
(``get``/``set``/``delete``/``clear`` and the async ``aget``/``aset``/``adelete``/``aclear``, with
Airflow's signatures); ``cleanup()`` and the four Airflow reference hooks are concrete. A backend
written from Airflow's documentation subclasses it unchanged. :class:`StoreBackend` is the same
contract as a runtime-checkable protocol: any object with the eight methods (an Airflow-native
backend included) is accepted by ``load_backend``, ``StateStore`` and the conformance suite.
:class:`statestore.core.primitive.PrimitiveStoreBackend` is an optional helper base on top.

Scopes: a backend receives statestore's or Airflow's ``TaskScope``/``AssetScope`` (same field
names); :func:`statestore.core.scopes.to_scope` turns either into statestore's.

Worker-side references (the *worker role*): ``store_value`` writes a value and returns its
reference, ``load_value`` reads it back (only for the scope and key it was written for, when told
them), ``discard_value(s)`` deletes exactly the value a reference names and ``iter_values`` lists
every value the role holds, for reconciliation. The defaults build on the eight methods and name a
value by its ``(scope, key)``. A backend that sets ``versioned_references`` writes every value as a
new, write-once *version* in a namespace its server role never uses, so no delete aimed at an old
value can remove a newer one and one location can serve both roles.

Fork safety: right after ``os.fork()``, the child calls ``_after_fork_in_child()`` on every live
instance; a backend holding connections, clients or locks overrides it to drop them (never to
close them: they are the parent's), so the instance works unchanged in both processes.
"""

from __future__ import annotations

import os
import sys
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, cast, runtime_checkable

from statestore.core import airflow_compat
from statestore.core.errors import InvalidReferenceError, StateStoreError
from statestore.core.naming import encode_segment, parse_path, scope_path, validate_key
from statestore.core.scopes import AssetScope, StoreScope, TaskScope, to_scope
from statestore.core.values import EARLIEST_EXPIRY, LATEST_EXPIRY, check_expires_at, decode_value, encode_value

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
    "StoreBackend",
    "StoredEntry",
    "StoredValue",
    "is_expired",
    "live_value",
    "utcnow",
    "version_expiry",
]

JsonValue = Any
"""A JSON-compatible value: str, int, float, bool, list, or dict with str keys (nested)."""

_LEGACY_TI_NAMESPACE = uuid.UUID("6f3c1f0e-3b1a-5d2e-9c47-2a4f5e6d7c8b")


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


def is_expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    """True when ``expires_at`` is set and not in the future."""
    return expires_at is not None and expires_at <= (now or utcnow())


@runtime_checkable
class StoreBackend(Protocol):
    """Airflow 3.3.2's backend contract as a protocol: the eight methods, nothing else.

    ``isinstance(obj, StoreBackend)`` holds for any object that has them (a subclass of Airflow's
    own ``BaseStoreBackend`` included); it checks names, not signatures.
    """

    def get(self, scope: Any, key: str, *, session: Any = None) -> str | None:
        """The stored JSON text, or None."""

    def set(self, scope: Any, key: str, value: str, *, expires_at: datetime | None = None, session: Any = None) -> None:
        """Write or overwrite JSON text."""

    def delete(self, scope: Any, key: str, *, session: Any = None) -> None:
        """Delete one key."""

    def clear(self, scope: Any, *, all_map_indices: bool = False, session: Any = None) -> None:
        """Delete every key of a scope."""

    async def aget(self, scope: Any, key: str, *, session: Any = None) -> str | None:
        """Async ``get``."""

    async def aset(
        self, scope: Any, key: str, value: str, *, expires_at: datetime | None = None, session: Any = None
    ) -> None:
        """Async ``set``."""

    async def adelete(self, scope: Any, key: str, *, session: Any = None) -> None:
        """Async ``delete``."""

    async def aclear(self, scope: Any, *, all_map_indices: bool = False, session: Any = None) -> None:
        """Async ``clear``."""


class BaseStoreBackend(ABC):
    """Airflow's backend contract: implement the eight abstract methods; see the module docstring.

    ``name`` is the short plugin name and ``reference_scheme`` prefixes the default references
    (``<scheme>://task/<dag>/<run>/<task>/<map_index>/<key>``). Airflow builds a backend with no
    arguments; ``config`` (statestore's configuration, Airflow's inside Airflow) is loaded on first
    use when a subclass does not pass it to ``super().__init__``.
    """

    name: ClassVar[str] = ""
    reference_scheme: ClassVar[str] = ""

    def __init__(self, *, config: Config | None = None) -> None:
        if config is None:  # read now, so a bad setting fails where the backend is built
            from statestore.core.config import load_config

            config = load_config()
        self.config = config
        _LIVE_BACKENDS.add(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        airflow_compat.register_with_airflow()

    @property
    def config(self) -> Config:
        """The configuration this backend reads its settings from (loaded on first use when not given)."""
        config = self.__dict__.get("_config")
        if config is None:
            from statestore.core.config import load_config

            config = self.__dict__["_config"] = load_config()
        return cast("Config", config)

    @config.setter
    def config(self, config: Config) -> None:
        self.__dict__["_config"] = config

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

    # -- the contract: Airflow 3.3.2's eight abstract methods --------------------------------------------

    @abstractmethod
    def get(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        """Return the stored JSON text, or None if the key does not exist (or, optionally, has expired)."""

    @abstractmethod
    def set(
        self, scope: StoreScope, key: str, value: str, *, expires_at: datetime | None = None, session: Any = None
    ) -> None:
        """Write or overwrite ``value`` (JSON text, kept verbatim); ``expires_at``: aware UTC datetime, None = never."""

    @abstractmethod
    def delete(self, scope: StoreScope, key: str, *, session: Any = None) -> None:
        """Delete one key; no-op if it does not exist."""

    @abstractmethod
    def clear(self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None) -> None:
        """Delete every key of ``scope``; for a task, one map index unless ``all_map_indices``."""

    @abstractmethod
    async def aget(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        """Async twin of :meth:`get`."""

    @abstractmethod
    async def aset(
        self, scope: StoreScope, key: str, value: str, *, expires_at: datetime | None = None, session: Any = None
    ) -> None:
        """Async twin of :meth:`set`."""

    @abstractmethod
    async def adelete(self, scope: StoreScope, key: str, *, session: Any = None) -> None:
        """Async twin of :meth:`delete`."""

    @abstractmethod
    async def aclear(self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None) -> None:
        """Async twin of :meth:`clear`."""

    def cleanup(self) -> CleanupResult | None:
        """Remove expired (and orphaned) entries; by default nothing to do (Airflow's no-op).

        A backend may return a :class:`CleanupResult` to report what went (``state-store clean``
        prints it); ``None`` means "no report".
        """
        return None

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
        from statestore.core.foreign import build_backend
        from statestore.core.store import check_distinct_roles

        try:
            server = build_backend(self.config.backend, self.config)
        except StateStoreError:  # Airflow's own server backend (not ours): it cannot share our storage names
            server = None
        if server is not None:
            check_distinct_roles(server, self)
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
    return live_value(reference, None if value is None else StoredEntry(value))


def live_value(reference: str, entry: StoredEntry | None) -> str:
    """The text of ``entry``, read through ``reference``; ``ReferenceNotFoundError`` when it is missing or expired."""
    if entry is None or is_expired(entry.expires_at):
        raise ReferenceNotFoundError(f"the value behind {reference!r} no longer exists (expired or deleted)")
    return entry.value


def version_expiry(expires_at: Any) -> datetime | None:
    """The expiry a new write-once version records: its row's (checked) plus :data:`REFERENCE_EXPIRY_MARGIN`.

    None (never) stays None: a value whose row never expires never expires either.
    """
    row_expiry = check_expires_at(expires_at)
    return None if row_expiry is None else row_expiry + REFERENCE_EXPIRY_MARGIN


def legacy_ti_id(scope: StoreScope) -> uuid.UUID:
    """A deterministic UUID standing in for the task-instance id that the older hooks received."""
    return uuid.uuid5(_LEGACY_TI_NAMESPACE, "/".join(scope_path(scope)))


def legacy_asset_ref(scope: StoreScope) -> str:
    """The asset reference string that the older hooks received: its name, else its uri, else its id."""
    assert isinstance(scope, AssetScope)
    return scope.name or scope.uri or str(scope.asset_id)


airflow_compat.register_with_airflow()
