"""``StateStore``: the worker-facing task and asset store API on a server-side and an optional worker-side backend.

Values are JSON-compatible Python objects (validated by :func:`statestore.core.values.encode_value`;
a rejected value or key writes nothing). Without a worker-side backend the JSON text is stored
inline in the server-side backend, limited to ``[state_store] max_value_storage_bytes``. With one,
``set`` writes the value through the worker backend's ``store_value`` and stores only the marker
``{"__airflow_state_ref__": "<reference>"}`` on the server (Airflow 3.3's format); a worker backend
may return ``None`` to keep a (small) value inline.

The life of an offloaded value (see "Lifecycle" in the core README):

* ``set`` writes a new write-once version (it expires, if ever, a margin after its row), then
  the row naming it; when the server refuses the row, the version is discarded again.
* ``get`` reads a reference only for the scope and key of its row, and reads the row again when
  its value vanished meanwhile (a concurrent delete, clear or cleanup).
* ``delete``/``clear``/``cleanup`` delete rows first, then discard exactly the versions the deleted
  rows named: a concurrent ``set``'s newer version is never touched. An overwritten version, a
  crash between the two steps, or rows that someone else deleted (``airflow db clean``) leave
  orphans, which :meth:`StateStore.reconcile` reclaims after a grace period.

Escaping: an inline value that is a dict containing ``"__airflow_state_ref__"`` or
``"__statestore_escaped__"`` is stored as ``{"__statestore_escaped__": value}`` and unwrapped on
read, so no user value is ever mistaken for a reference (or for an escaped value).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import posixpath
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from statestore.core.base import (
    RECONCILE_GRACE,
    BaseStoreBackend,
    CleanupResult,
    JsonValue,
    ReferenceNotFoundError,
    utcnow,
)
from statestore.core.config import MAX_RETENTION_DAYS, Config, load_config
from statestore.core.errors import ConfigurationError, StateStoreError, StorageError, ValueTooLargeError
from statestore.core.foreign import build_backend
from statestore.core.naming import validate_key
from statestore.core.scopes import NEVER_EXPIRE, AssetScope, StoreScope, TaskScope, to_scope
from statestore.core.values import decode_value, encode_value

if TYPE_CHECKING:
    from statestore.core.reconcile import ReconcileResult

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

BackendArg = Any
"""A backend: an instance or class with Airflow's eight methods, a plugin name, a class path, or None (configured)."""
_MAX_RETENTION = timedelta(days=MAX_RETENTION_DAYS)


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


def references_in(texts: Iterable[str | None]) -> list[str]:
    """The references named by the server-side markers among ``texts`` (JSON texts of rows; None = no row)."""
    references = []
    for text in texts:
        if text is not None and text.startswith('{"'):  # a marker is a one-key object; skip the rest undecoded
            try:
                reference = _reference_in(decode_value(text))
            except ValueError:  # not JSON (or too deep to parse): another program's text, no marker
                continue
            if reference is not None:
                references.append(reference)
    return references


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "redis": 6379, "rediss": 6379}
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost"}


def _normalised_location(location: str) -> tuple[str, str, int | None, str, str]:
    """``(scheme, host, port, path, query)`` of a location, spelling variants folded.

    Drivers (``postgresql+psycopg``), loopback names (``localhost``, ``127.0.0.1``), default
    ports, ``.`` and ``..`` segments and trailing slashes do not make a different location.
    """
    parts = urlsplit(location)
    scheme = parts.scheme.partition("+")[0].lower()
    host = (parts.hostname or "").lower()
    host = "127.0.0.1" if host in _LOOPBACK else host
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    path = posixpath.normpath(parts.path) if parts.path else ""
    if scheme == "sqlite" and path.startswith("/"):  # sqlite:///relative.db and sqlite:////absolute.db
        path = os.path.realpath(path[1:] or ".")
    return scheme, host, port, path.rstrip("/"), parts.query


def same_location(first: str, second: str) -> bool:
    """Whether two backend locations name the same storage (see :func:`_normalised_location`)."""
    return first == second or _normalised_location(first) == _normalised_location(second)


def _same_store(first: Any, second: Any) -> bool:
    """Whether two server stores are the same storage (both tell a location, and it is the same)."""
    location, other = getattr(first, "location", None), getattr(second, "location", None)
    return isinstance(location, str) and isinstance(other, str) and same_location(location, other)


def check_distinct_roles(server: BaseStoreBackend, worker: BaseStoreBackend) -> None:
    """Refuse one storage location for both roles when the worker backend would overwrite its own rows.

    A worker backend with ``versioned_references`` keeps its values in a namespace of their own,
    so sharing a location is safe; any other writes values under the same names as the server's
    rows, and the row (the reference) would replace the value it points to.
    """
    if worker.versioned_references:
        return
    location, other = getattr(server, "location", None), worker.location
    if location is not None and other is not None and same_location(location, other):
        raise ConfigurationError(
            f"the server-side backend ([state_store] backend) and the worker-side backend ([workers] state_backend) "
            f"both store in {other}, where each reference would replace the value it points to; give the "
            "worker-side backend its own location (another database, path or prefix) or use one that keeps its "
            "values apart (local, s3, gcs, redis)"
        )


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
        self.backend = build_backend(backend if backend is not None else self.config.backend, self.config)
        worker = worker_backend if worker_backend is not None else self.config.worker_backend
        self.worker_backend = None if worker is None else build_backend(worker, self.config)
        if self.worker_backend is not None:
            check_distinct_roles(self.backend, self.worker_backend)

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

    def _loaded(self, key: str, text: str | None, failed: str | None) -> tuple[bool, str | None, JsonValue]:
        """Decide what a row read means: ``(done, reference to load, value)``.

        ``failed`` is the reference whose value just vanished; a row still naming it is dangling
        (its value is gone for good), so the read ends with the default.
        """
        if text is None:
            return True, None, None
        reference, value = self._decoded(key, text)
        if reference is None:
            return True, None, value
        if reference == failed:
            return True, None, None
        return False, reference, None

    def _get(self, scope: StoreScope, key: str, default: JsonValue) -> JsonValue:
        failed = None
        for _ in range(_READ_ATTEMPTS):
            done, reference, value = self._loaded(key, self.backend.get(scope, key), failed)  # validates the key
            if done:
                return default if value is None else value
            assert reference is not None
            try:
                return decode_value(self._require_worker(key, reference).load_value(reference, scope=scope, key=key))
            except ReferenceNotFoundError:  # deleted or replaced meanwhile: read the row again
                failed = reference
        return default

    async def _aget(self, scope: StoreScope, key: str, default: JsonValue) -> JsonValue:
        failed = None
        for _ in range(_READ_ATTEMPTS):
            done, reference, value = self._loaded(key, await self.backend.aget(scope, key), failed)
            if done:
                return default if value is None else value
            assert reference is not None
            worker = self._require_worker(key, reference)
            try:
                return decode_value(await worker.aload_value(reference, scope=scope, key=key))
            except ReferenceNotFoundError:
                failed = reference
        return default

    def _set(self, scope: StoreScope, key: str, value: JsonValue, expires_at: datetime | None) -> None:
        key, text = validate_key(key), encode_value(value)
        worker = self.worker_backend
        if worker is not None:
            started = time.monotonic()
            reference = worker.store_value(scope, key, text, expires_at=expires_at, allow_inline=True)
            if reference is not None:
                try:
                    self.backend.set(scope, key, encode_value({REF_MARKER: reference}), expires_at=expires_at)
                except BaseException:
                    self._discard_unless_held(scope, key, reference)
                    raise
                if time.monotonic() - started > _RECHECK_AFTER:
                    try:
                        worker.load_value(reference, scope=scope, key=key)
                    except ReferenceNotFoundError:
                        raise _reclaimed(reference, scope, key) from None
                return
        self.backend.set(scope, key, self._inline_text(key, value, text), expires_at=expires_at)

    async def _aset(self, scope: StoreScope, key: str, value: JsonValue, expires_at: datetime | None) -> None:
        key, text = validate_key(key), encode_value(value)
        worker = self.worker_backend
        if worker is not None:
            started = time.monotonic()
            reference = await worker.astore_value(scope, key, text, expires_at=expires_at, allow_inline=True)
            if reference is not None:
                try:
                    await self.backend.aset(scope, key, encode_value({REF_MARKER: reference}), expires_at=expires_at)
                except BaseException:
                    await asyncio.to_thread(self._discard_unless_held, scope, key, reference)
                    raise
                if time.monotonic() - started > _RECHECK_AFTER:
                    try:
                        await worker.aload_value(reference, scope=scope, key=key)
                    except ReferenceNotFoundError:
                        raise _reclaimed(reference, scope, key) from None
                return
        await self.backend.aset(scope, key, self._inline_text(key, value, text), expires_at=expires_at)

    def _discard_unless_held(self, scope: StoreScope, key: str, reference: str) -> None:
        """After a failed server write: discard the new version, unless the row holds it after all.

        A write can fail after it committed (a connection lost on the way back); its row then names
        the version, which must stay. When even that cannot be read, the version stays for
        reconciliation, never risking a row without its value.
        """
        assert self.worker_backend is not None
        try:
            held = self.backend.get(scope, key)
            if held is None or _reference_in(decode_value(held)) != reference:
                self.worker_backend.discard_value(reference)
        except Exception as exc:  # noqa: BLE001 - the write's own error is the one to raise
            log.warning("a refused write left its value %s for reconciliation: %s", reference, exc)

    def _delete(self, scope: StoreScope, key: str) -> None:
        if self.worker_backend is None or getattr(self.worker_backend, "deletes_by_name", False):
            self.backend.delete(scope, key)
            if self.worker_backend is not None:
                self.worker_backend.delete(scope, key)
            return
        self._discard(references_in([_pop(self.backend, scope, key)]))

    async def _adelete(self, scope: StoreScope, key: str) -> None:
        if self.worker_backend is None or getattr(self.worker_backend, "deletes_by_name", False):
            await self.backend.adelete(scope, key)
            if self.worker_backend is not None:
                await self.worker_backend.adelete(scope, key)
            return
        await self._adiscard(references_in([await _apop(self.backend, scope, key)]))

    def _clear(self, scope: StoreScope, all_map_indices: bool = False) -> None:
        if self.worker_backend is None or getattr(self.worker_backend, "deletes_by_name", False):
            self.backend.clear(scope, all_map_indices=all_map_indices)
            if self.worker_backend is not None:
                self.worker_backend.clear(scope, all_map_indices=all_map_indices)
            return
        self._discard(references_in(_pop_scope(self.backend, scope, all_map_indices)))

    async def _aclear(self, scope: StoreScope, all_map_indices: bool = False) -> None:
        if self.worker_backend is None or getattr(self.worker_backend, "deletes_by_name", False):
            await self.backend.aclear(scope, all_map_indices=all_map_indices)
            if self.worker_backend is not None:
                await self.worker_backend.aclear(scope, all_map_indices=all_map_indices)
            return
        await self._adiscard(references_in(await _apop_scope(self.backend, scope, all_map_indices)))

    def _discard(self, references: list[str]) -> int:
        """Discard the versions that deleted rows named; failures are logged (reconciliation reclaims them)."""
        if not references:
            return 0
        assert self.worker_backend is not None
        return _discarded(references, self.worker_backend.discard_values(references))

    async def _adiscard(self, references: list[str]) -> int:
        if not references:
            return 0
        assert self.worker_backend is not None
        return _discarded(references, await self.worker_backend.adiscard_values(references))

    def _lister(self, name: str) -> Callable[[StoreScope], Any]:
        """The server store's ``keys``/``akeys``: listing is optional in Airflow's contract."""
        method = getattr(self.backend, name, None)
        if not callable(method):
            raise StateStoreError(
                f"{type(self.backend).__name__} cannot list keys (it has no {name}() method); read keys by name instead"
            )
        return cast("Callable[[StoreScope], Any]", method)

    # -- maintenance ---------------------------------------------------------------------------------

    def cleanup(self, *, dry_run: bool = False, progress: Callable[[str, int], None] | None = None) -> CleanupResult:
        """Remove expired entries (and inactive assets' state on the metastore); report what went.

        With a worker-side backend, the metastore deletes expired rows holding references batch by
        batch and hands over their values after each commit; exactly the versions they named are
        then discarded (``by_kind["external_objects"]``, outside ``removed``; failures in
        ``by_kind["external_failed"]``, left for reconciliation, as is everything a crash between
        the two steps leaves). Any other server store removes its rows itself (its ``cleanup()`` may
        report, or return None); the values no row names any more are then reclaimed by
        :meth:`reconcile` (default grace), when the worker backend can list them. ``dry_run`` and
        ``progress`` need a store that can count: the metastore and the object stores.
        """
        parameters = inspect.signature(self.backend.cleanup).parameters
        if "on_references" not in parameters:  # a store that cannot hand over the references of the rows it removes
            if "dry_run" in parameters:  # the object stores count and report
                counting = cast("Callable[..., CleanupResult]", self.backend.cleanup)
                result: CleanupResult | None = counting(dry_run=dry_run, progress=progress)
            elif dry_run:
                raise StateStoreError(
                    f"{type(self.backend).__name__} cannot count what clean would remove (its cleanup has no "
                    "dry run); run clean without --dry-run to remove expired entries"
                )
            else:
                result = self.backend.cleanup()
            report = result if isinstance(result, CleanupResult) else CleanupResult()  # None: no report
            if self.worker_backend is not None and not dry_run:
                self._reconcile_after_cleanup(report)
            return report
        counts = {"external_objects": 0, "external_failed": 0}

        def discard(values: list[str]) -> None:
            references = references_in(values)
            discarded = self._discard(references)
            counts["external_objects"] += discarded
            counts["external_failed"] += len(references) - discarded

        on_references = None if self.worker_backend is None else discard
        cleanup = cast("Callable[..., CleanupResult]", self.backend.cleanup)  # the metastore's, with its keywords
        result = cleanup(dry_run=dry_run, on_references=on_references, progress=progress)
        if on_references is not None and not dry_run:
            result.by_kind.update(counts)
        return result

    def _reconcile_after_cleanup(self, report: CleanupResult) -> None:
        """Reclaim the values of rows a server store removed without naming them (reconciliation, default grace)."""
        if not callable(getattr(self.worker_backend, "iter_values", None)) or getattr(
            self.worker_backend, "deletes_by_name", False
        ):
            return
        try:
            reconciled = self.reconcile()
        except NotImplementedError:  # a worker backend that cannot list its values
            return
        report.by_kind["external_objects"] = reconciled.discarded
        report.by_kind["external_failed"] = reconciled.failed

    def reconcile(
        self,
        *,
        dry_run: bool = False,
        grace: timedelta = RECONCILE_GRACE,
        progress: Callable[[ReconcileResult], None] | None = None,
    ) -> ReconcileResult:
        """Discard worker-side values that no server row references any more; see :mod:`statestore.core.reconcile`.

        Values younger than ``grace`` are kept (their rows may not be committed yet). Streams the
        worker backend's listing page by page, so memory stays flat whatever the number of values.
        With Airflow's configuration, the rows that decide are those of the server store Airflow's
        API server uses (``[state_store] backend``, by default Airflow's own metastore), resolved
        by Airflow itself.
        """
        from statestore.core.reconcile import reconcile

        if self.worker_backend is None:
            raise StateStoreError(
                "reconcile needs a worker-side backend ([workers] state_backend): without one, values are stored "
                "inline and there is nothing to reconcile"
            )
        if not self.config.from_airflow:
            return reconcile(self.backend, self.worker_backend, dry_run=dry_run, grace=grace, progress=progress)
        from airflow.state import get_state_backend

        airflow_server: Any = get_state_backend()  # an Airflow store or one of ours
        # A StateStore inside Airflow may keep its rows in another server store than Airflow's tasks do (with
        # Airflow's own [state_store] backend): a value either names stays.
        same = airflow_server is self.backend or _same_store(airflow_server, self.backend)
        return reconcile(
            airflow_server,
            self.worker_backend,
            dry_run=dry_run,
            grace=grace,
            progress=progress,
            also=() if same else (self.backend,),
        )


_READ_ATTEMPTS = 3
"""Row reads of one ``get`` whose value vanishes meanwhile (each time replaced by a newer row)."""
_RECHECK_AFTER = RECONCILE_GRACE.total_seconds() / 2
"""Seconds after which a ``set`` checks that reconciliation did not take its value before its row committed."""


def _reclaimed(reference: str, scope: StoreScope, key: str) -> StorageError:
    """The error of a ``set`` so slow that reconciliation may have taken its value before its row committed."""
    return StorageError(
        f"writing key {key!r} of {scope!r} took longer than half the reconciliation grace period "
        f"({RECONCILE_GRACE}), and its value {reference!r} was reclaimed before its row committed; "
        "the write is not acknowledged: write the key again"
    )


def _discarded(references: list[str], failures: dict[str, str]) -> int:
    """How many of ``references`` went; each failure is logged (reconciliation reclaims it later)."""
    for reference, reason in failures.items():
        log.warning("left %s for reconciliation: %s", reference, reason)
    return len(references) - len(failures)


def _pop(backend: BaseStoreBackend, scope: StoreScope, key: str) -> str | None:
    """``backend.pop``, or a read then a delete for a server store with only Airflow's eight methods."""
    pop = getattr(backend, "pop", None)
    if pop is not None:
        return pop(scope, key)  # type: ignore[no-any-return]
    text = backend.get(scope, key)
    backend.delete(scope, key)
    return text


async def _apop(backend: BaseStoreBackend, scope: StoreScope, key: str) -> str | None:
    pop = getattr(backend, "apop", None)
    if pop is not None:
        return await pop(scope, key)  # type: ignore[no-any-return]
    text = await backend.aget(scope, key)
    await backend.adelete(scope, key)
    return text


def _pop_scope(backend: BaseStoreBackend, scope: StoreScope, all_map_indices: bool) -> list[str]:
    """``backend.pop_scope``, or a plain clear (values left to reconciliation) for an Airflow-only server store."""
    pop_scope = getattr(backend, "pop_scope", None)
    if pop_scope is not None:
        return pop_scope(scope, all_map_indices=all_map_indices)  # type: ignore[no-any-return]
    backend.clear(scope, all_map_indices=all_map_indices)
    return []


async def _apop_scope(backend: BaseStoreBackend, scope: StoreScope, all_map_indices: bool) -> list[str]:
    pop_scope = getattr(backend, "apop_scope", None)
    if pop_scope is not None:
        return await pop_scope(scope, all_map_indices=all_map_indices)  # type: ignore[no-any-return]
    await backend.aclear(scope, all_map_indices=all_map_indices)
    return []


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
        """The keys currently stored, sorted (a server store that cannot list raises ``StateStoreError``)."""
        return sorted(self.store._lister("keys")(self.scope))

    async def aget(self, key: str, default: JsonValue = None) -> JsonValue:
        """Async twin of :meth:`get`."""
        return await self.store._aget(self.scope, key, default)

    async def adelete(self, key: str) -> None:
        """Async twin of :meth:`delete`."""
        await self.store._adelete(self.scope, key)  # the server-side backend validates the key first

    async def akeys(self) -> list[str]:
        """Async twin of :meth:`keys`."""
        return sorted(await self.store._lister("akeys")(self.scope))


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
