"""``ObjectStoreBackend``: the one set of rules shared by every object-store backend (local, S3, GCS).

A concrete backend subclasses it and supplies only its storage *primitives* and settings; every
rule below lives here, once.

Rules
-----
* **Object names** are ``<prefix>/<scope_path>/<encoded key>`` (``naming.scope_path`` and
  ``naming.encode_segment``): readable, injective, made of ``[A-Za-z0-9_%~-]`` segments, so no
  ``..`` or separator can be smuggled in. A segment longer than the store's limit is replaced by
  ``naming.shorten_segment`` (readable head, ``~``, SHA-256). Scope segments get at most
  ``max_segment_bytes`` (and :data:`ID_SEGMENT_BUDGET` when the store limits whole names), the key
  segment whatever is left of ``max_name_bytes``. When anything was shortened, the object body starts
  with one line holding the unshortened path (relative to the prefix), so ``keys()`` and
  ``resolve_reference`` can still recover the key (at the cost of one read, only for such names).
* **Worker-role values** (``store_value``) are write-once *versions* in a namespace of their own,
  ``<prefix>/ref/<scope_path>/<encoded key>/<version>`` (``naming.new_version``: milliseconds since
  the epoch and 64 random bits, so the name tells when it was written). Every ``store_value``
  writes a new object and nothing ever overwrites one, so a delete aimed at an old version can
  never remove a newer one; the server role never uses ``ref/``, so one bucket and prefix can
  serve both roles. ``discard_value(s)`` deletes exactly the versions named (batched),
  ``iter_values`` lists ``ref/`` page by page for reconciliation.
* **References** are ``<reference_scheme>://<bucket>/<object name>``. Loading or resolving one
  first checks that it is in this backend's bucket and prefix and has the exact shape of a name
  this layer produces (a version, or an unversioned ``task/``/``asset/`` name written before
  versioning, still readable); anything else raises ``InvalidReferenceError`` before any request
  is made, as does a reference read for another scope or key than the one it names.
* **Metadata** travels with the object as string pairs: :data:`META_EXPIRES_AT` (ISO-8601 UTC;
  absent = never), :data:`META_ENCODING` (``gzip``; absent = plain UTF-8) and :data:`META_LONG_NAME`
  (``1`` when the body starts with the unshortened path). Reading obeys the metadata, never the
  current settings, so changing ``compression`` or ``threshold`` never breaks old objects.
  ``get`` never returns an expired value; ``cleanup()`` deletes expired server-role objects
  (``task/``, ``asset/``); worker-role values carry an expiry only when ``store_value`` is given
  one, and are reclaimed by their rows' deletes and by reconciliation, never by ``cleanup()``.
* **Threshold**: ``store_value(..., allow_inline=True)`` keeps values of fewer than ``threshold``
  UTF-8 bytes inline (returns None). ``allow_inline=False`` (the Airflow hooks) always stores.
* **Batched clear**: list the scope's prefix page by page and delete each page in batches of
  ``delete_batch_size`` names: ``ceil(N/page)`` list plus ``ceil(N/batch)`` delete requests. Per-name
  failures of a batch are collected, the remaining batches still run, and one ``StorageError``
  reports them; running ``clear`` again retries exactly what is left.

Primitives a subclass implements (names are full object names, prefix included)
-------------------------------------------------------------------------------
* ``_put_object(name, data, metadata, expires_at)``: one request; create or overwrite the object with
  ``data`` and the user ``metadata``. ``expires_at`` (aware UTC or None) is also recorded in
  ``metadata``; it is passed separately for stores with a native field (GCS ``custom_time``).
* ``_get_object(name) -> StoredObject | None``: one request; data and metadata, None when missing.
* ``_delete_object(name)``: one request; a missing object is not an error.
* ``_list_objects(prefix) -> Iterator[list[ListedObject]]``: names starting with ``prefix`` (which
  ends with ``/``), one page per request, ideally pages of ``delete_batch_size``. ``metadata`` of a
  listed object is None when the listing does not carry it (S3), else the object's metadata (GCS).
* ``_delete_objects(names) -> Mapping[str, str]``: delete at most ``delete_batch_size`` names in one
  request (missing names are not errors); return ``{name: reason}`` for the names that failed.
* ``_head_object(name) -> Mapping[str, str] | None``: the metadata alone (used by ``cleanup`` only
  when the listing did not carry metadata), None when missing.

Async twins ``_aput_object``, ``_aget_object``, ``_adelete_object``, ``_alist_objects`` (an async
iterator of pages), ``_adelete_objects`` and ``_ahead_object`` default to running the sync
primitive on a shared pool of :data:`OFFLOAD_THREADS` I/O threads (``_offload``), so the event loop
is never blocked; override them with native async clients where that is faster. Primitives
translate their client's errors into ``StorageError`` (cause chained); the layer adds nothing but
the rules.

Settings are declared once, in ``settings`` (a tuple of :class:`~statestore.core.settings.SettingSpec`
starting with :func:`~statestore.core.settings.object_store_settings`: ``bucket`` (named by
``bucket_setting``; ``_default_bucket()`` may supply one), ``prefix``, ``threshold`` (bytes, 0 =
always store) and ``compression`` (``none`` or ``gzip``)), and resolved from the keyword arguments,
else ``[<config_section>]``, else their defaults; a subclass reads its own from ``self._settings``.

Interface changes (additive only) are listed here:
* the async defaults run on ``_offload`` (a dedicated I/O thread pool) instead of ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextvars
import gzip
import os
import re
import threading
from abc import abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from typing import Any, ClassVar, NamedTuple, TypeVar

from statestore.core.base import (
    CleanupResult,
    ReferenceNotFoundError,
    StoredEntry,
    StoredValue,
    is_expired,
    live_value,
    utcnow,
    version_expiry,
)
from statestore.core.config import Config
from statestore.core.errors import ConfigurationError, InvalidReferenceError, StateStoreError, StorageError
from statestore.core.naming import (
    VERSION_LENGTH,
    decode_segment,
    encode_segment,
    identity_scope,
    new_version,
    parse_path,
    scope_path,
    shorten_segment,
    validate_key,
    version_written_at,
)
from statestore.core.primitive import PrimitiveStoreBackend
from statestore.core.scopes import StoreScope, TaskScope, to_scope
from statestore.core.settings import COMPRESSIONS, SettingSpec, object_store_settings, resolve
from statestore.core.values import check_value

__all__ = [
    "COMPRESSIONS",
    "ID_SEGMENT_BUDGET",
    "OFFLOAD_THREADS",
    "META_ENCODING",
    "META_EXPIRES_AT",
    "META_LONG_NAME",
    "VALUES_NAMESPACE",
    "ListedObject",
    "ObjectStoreBackend",
    "StoredObject",
    "batched",
]

VALUES_NAMESPACE = "ref"
"""The first segment under the prefix of every worker-role value (the server role uses ``task`` and ``asset``)."""
META_EXPIRES_AT = "statestore-expires-at"
META_ENCODING = "statestore-encoding"
META_LONG_NAME = "statestore-long-name"
ID_SEGMENT_BUDGET = 200
"""Bytes allowed for each scope segment when the store limits whole names, leaving room for the key."""
_MIN_KEY_BUDGET = 100
_SEGMENT = re.compile(r"(?:%[0-9A-F]{2}|[A-Za-z0-9_-])+")
_SHORTENED = re.compile(r"[A-Za-z0-9_%-]*~[0-9a-f]{64}")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()-]+")


OFFLOAD_THREADS = 32
"""Threads of the process-wide pool that runs blocking primitives for the async twins.

asyncio's default executor has ``min(32, cpus + 4)`` threads, which caps concurrent object-store
requests at 6 on a 2-core worker; these calls wait on the network, so they get a pool of their own.
"""
_T = TypeVar("_T")
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _io_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(OFFLOAD_THREADS, thread_name_prefix="statestore-io")
        return _pool


def _forget_pool_after_fork() -> None:
    """A forked child (Airflow's task runner, Celery's prefork) has none of the parent's threads."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


class StoredObject(NamedTuple):
    """One object as read back: its bytes and its user metadata."""

    data: bytes
    metadata: Mapping[str, str]


class ListedObject(NamedTuple):
    """One object in a listing: its full name and, when the listing carries it, its metadata."""

    name: str
    metadata: Mapping[str, str] | None = None


def batched(names: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of ``names`` of at most ``size`` items."""
    for start in range(0, len(names), size):
        yield names[start : start + size]


def _format_expiry(expires_at: datetime) -> str:
    return expires_at.astimezone(timezone.utc).isoformat()


def _parse_expiry(name: str, text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise StorageError(f"object {name!r} has an unreadable {META_EXPIRES_AT} {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class ObjectStoreBackend(PrimitiveStoreBackend):
    """Task/asset state as one object per key; see the module docstring for rules and primitives."""

    config_section: ClassVar[str] = ""
    """The settings section, ``statestore_<name>``."""
    settings: ClassVar[tuple[SettingSpec, ...]] = object_store_settings(
        SettingSpec("bucket", str, None, "bucket name", required=True)
    )
    """Every setting of the backend (the same tuple its plugin's ``BackendSpec`` announces)."""
    bucket_setting: ClassVar[str] = "bucket"
    """The setting (and keyword) naming the bucket or directory."""
    delete_batch_size: ClassVar[int] = 1000
    """Most names one ``_delete_objects`` request may carry (S3 1000, GCS 100)."""
    max_name_bytes: ClassVar[int | None] = None
    """Limit on a whole object name in UTF-8 bytes (S3 and GCS: 1024), None if unlimited."""
    max_segment_bytes: ClassVar[int | None] = None
    """Limit on one ``/``-separated segment (a filesystem's 255), None if unlimited."""

    def __init__(self, *, config: Config | None = None, **given: Any) -> None:
        """Resolve ``settings`` (``given`` keyword arguments win; None means "from configuration")."""
        super().__init__(config=config)
        section = self.config_section or f"statestore_{self.name}"
        self._settings = resolve(self.config, section, self.settings, given, owner=type(self).__name__)
        self.bucket = self._check_bucket(self._settings[self.bucket_setting] or self._default_bucket() or "")
        self.prefix = self._check_prefix(self._settings["prefix"] or "")
        self._root = f"{self.prefix}/" if self.prefix else ""
        self._reference_root = f"{self._scheme}://{self.bucket}/{self._root}"
        self.threshold: int = self._settings["threshold"]
        self.compression: str = self._settings["compression"]
        self._check_name_room()

    # -- settings hooks ------------------------------------------------------------------------------

    def _default_bucket(self) -> str | None:
        """The bucket to use when none is configured (the local backend's directory); None = required."""
        return None

    def _check_bucket(self, bucket: str) -> str:
        """Validate the bucket name (no ``/``, no whitespace); subclasses may be stricter or looser."""
        bucket = bucket.strip()
        if not bucket or "/" in bucket or re.search(r"\s", bucket):
            raise ConfigurationError(f"{type(self).__name__}: invalid {self.bucket_setting} name {bucket!r}")
        return bucket

    def _check_prefix(self, prefix: str) -> str:
        segments = [s for s in prefix.strip().strip("/").split("/")] if prefix.strip().strip("/") else []
        for segment in segments:
            if not _PREFIX_SEGMENT.fullmatch(segment) or segment in (".", ".."):
                raise ConfigurationError(
                    f"{type(self).__name__}: invalid prefix {prefix!r}; use '/'-separated segments of "
                    "letters, digits and !_.*'()- (not '.' or '..')"
                )
        return "/".join(segments)

    def _check_name_room(self) -> None:
        if self.max_name_bytes is None:
            return
        versioned = len(f"{VALUES_NAMESPACE}/") + 1 + VERSION_LENGTH
        worst_scope = versioned + len("task/-1/") + 3 * (self._id_budget() + 1) + len(str(2**63))
        room = self.max_name_bytes - len(self._root.encode()) - worst_scope
        if room < _MIN_KEY_BUDGET:
            raise ConfigurationError(
                f"{type(self).__name__}: prefix {self.prefix!r} is too long; object names are limited to "
                f"{self.max_name_bytes} bytes, so keep it under {len(self.prefix) + room - _MIN_KEY_BUDGET} bytes"
            )

    @property
    def location(self) -> str:
        """``<scheme>://<bucket>/<prefix>``."""
        return self._reference_root

    # -- naming ----------------------------------------------------------------------------------------

    def _id_budget(self) -> int:
        budgets = [b for b in (self.max_segment_bytes, ID_SEGMENT_BUDGET if self.max_name_bytes else None) if b]
        return min(budgets) if budgets else 1 << 30

    def _scope_dir(self, scope: StoreScope, all_map_indices: bool = False) -> str:
        """The full name prefix (ending with ``/``) holding ``scope``'s objects."""
        budget = self._id_budget()
        segments = [shorten_segment(s, budget) for s in scope_path(scope, all_map_indices=all_map_indices)]
        return self._root + "/".join(segments) + "/"

    def object_name(self, scope: StoreScope, key: str) -> str:
        """The full object name of ``(scope, key)``, prefix included (deterministic)."""
        return self._object_name(to_scope(scope), key)[0]

    def _object_name(self, scope: StoreScope, key: str) -> tuple[str, str | None]:
        """The name and, when any segment was shortened, the unshortened path relative to the prefix."""
        directory = self._scope_dir(scope)
        encoded_key = encode_segment(key)
        budgets = [b for b in (self.max_segment_bytes,) if b]
        if self.max_name_bytes is not None:
            budgets.append(self.max_name_bytes - len(directory.encode()))
        name = directory + (shorten_segment(encoded_key, min(budgets)) if budgets else encoded_key)
        if "~" not in name:
            return name, None
        return name, "/".join((*scope_path(scope), encoded_key))

    def _value_name(self, scope: StoreScope, key: str, version: str) -> tuple[str, str | None]:
        """The name of one version of a worker-role value and, when shortened, its unshortened path."""
        budget = self._id_budget()
        segments = [shorten_segment(s, budget) for s in scope_path(scope)]
        directory = f"{self._root}{VALUES_NAMESPACE}/" + "/".join(segments) + "/"
        encoded_key = encode_segment(key)
        budgets = [b for b in (self.max_segment_bytes,) if b]
        if self.max_name_bytes is not None:
            budgets.append(self.max_name_bytes - len(directory.encode()) - 1 - VERSION_LENGTH)
        name = directory + (shorten_segment(encoded_key, min(budgets)) if budgets else encoded_key) + "/" + version
        if "~" not in name:
            return name, None
        return name, "/".join((*scope_path(scope), encoded_key))

    def reference_for(self, scope: StoreScope, key: str) -> str:
        """``<scheme>://<bucket>/<object name>`` of the server-role object of ``(scope, key)`` (deterministic)."""
        return self._reference(self.object_name(scope, key))

    def _reference(self, name: str) -> str:
        return f"{self._scheme}://{self.bucket}/{name}"

    def _name_from_reference(self, reference: str) -> str:
        """The object name a reference points to, after checking it is one this backend produced."""
        if not isinstance(reference, str) or not reference.startswith(self._reference_root):
            raise InvalidReferenceError(
                f"{type(self).__name__} refuses reference {reference!r}: it is not under {self._reference_root!r}"
            )
        relative = reference[len(self._reference_root) :]
        segments = relative.split("/")
        try:
            path, version = self._split_version(segments)
            self._check_shape(path)
            shortened = any("~" in s for s in path)  # checked against the recorded long name when resolved
            if not shortened and self._expected_name(*parse_path(path), version) != self._root + relative:
                raise ValueError("not the canonical name of its scope and key")
        except ValueError as exc:
            raise InvalidReferenceError(
                f"{type(self).__name__} refuses malformed reference {reference!r}: {exc}"
            ) from exc
        return self._root + relative

    @staticmethod
    def _split_version(segments: list[str]) -> tuple[list[str], str | None]:
        """``(scope and key segments, version)`` of a name's segments; no version for pre-versioning names."""
        if segments[0] != VALUES_NAMESPACE:
            return segments, None
        if len(segments) < 3:
            raise ValueError("not a versioned value name")
        version_written_at(segments[-1])
        return segments[1:-1], segments[-1]

    def _expected_name(self, scope: StoreScope, key: str, version: str | None) -> str:
        """The name a reference to ``(scope, key)`` has: its version's, or the pre-versioning object's."""
        if version is None:
            return self.object_name(scope, key)
        return self._value_name(identity_scope(to_scope(scope)), key, version)[0]

    def _check_shape(self, segments: list[str]) -> None:
        for segment in segments:
            if not (_SEGMENT.fullmatch(segment) or _SHORTENED.fullmatch(segment)):
                raise ValueError(f"segment {segment!r} is not an encoded or shortened name")
        if segments[0] == "task" and len(segments) == 6 and re.fullmatch(r"-1|0|[1-9][0-9]*", segments[4]):
            return
        if segments[0] == "asset" and len(segments) == 4 and segments[1] in ("name", "uri", "id"):
            return
        raise ValueError("not a task or asset object name")

    # -- encoding of objects ------------------------------------------------------------------------

    def _encode(self, long_name: str | None, value: str, expires_at: datetime | None) -> tuple[bytes, dict[str, str]]:
        data = value.encode("utf-8")
        metadata: dict[str, str] = {}
        if long_name is not None:
            data = long_name.encode("ascii") + b"\n" + data
            metadata[META_LONG_NAME] = "1"
        if self.compression == "gzip":
            data = gzip.compress(data, mtime=0)
            metadata[META_ENCODING] = "gzip"
        if expires_at is not None:
            metadata[META_EXPIRES_AT] = _format_expiry(expires_at)
        return data, metadata

    @staticmethod
    def _decode(name: str, obj: StoredObject) -> tuple[str | None, StoredEntry]:
        """The unshortened path (if recorded) and the entry of a stored object, per its own metadata."""
        data, metadata = obj
        encoding = metadata.get(META_ENCODING, "")
        if encoding == "gzip":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise StorageError(f"object {name!r} is marked gzip but does not decompress: {exc}") from exc
        elif encoding not in ("", "identity"):
            raise StorageError(
                f"object {name!r} uses encoding {encoding!r}, which this statestore version cannot read; upgrade it"
            )
        long_name = None
        if metadata.get(META_LONG_NAME) == "1":
            head, _, data = data.partition(b"\n")
            long_name = head.decode("ascii")
        expires_at = _parse_expiry(name, metadata.get(META_EXPIRES_AT))
        return long_name, StoredEntry(data.decode("utf-8"), expires_at)

    @staticmethod
    def _key_shortened(name: str) -> bool:
        return "~" in name.rpartition("/")[2]

    def _key_of(self, name: str, obj: StoredObject | None) -> str:
        """The key of a listed object: from its name, or from ``obj`` (read by the caller) when shortened."""
        if not self._key_shortened(name):
            return decode_segment(name.rpartition("/")[2])
        return decode_segment(self._long_name_of(name, obj).rpartition("/")[2])

    def _long_name_of(self, name: str, obj: StoredObject | None) -> str:
        if obj is None:
            raise ReferenceNotFoundError(f"object {name!r} no longer exists")
        long_name, _ = self._decode(name, obj)
        if long_name is None:
            raise StorageError(f"object {name!r} has a shortened name but no {META_LONG_NAME} header")
        return long_name

    # -- primitives (see the module docstring) ---------------------------------------------------------

    @abstractmethod
    def _put_object(self, name: str, data: bytes, metadata: Mapping[str, str], expires_at: datetime | None) -> None:
        """Create or overwrite ``name`` with ``data`` and ``metadata`` in one request."""

    @abstractmethod
    def _get_object(self, name: str) -> StoredObject | None:
        """Read ``name`` (data and metadata) in one request; None when it does not exist."""

    @abstractmethod
    def _delete_object(self, name: str) -> None:
        """Delete ``name`` in one request; a missing object is not an error."""

    @abstractmethod
    def _list_objects(self, prefix: str) -> Iterator[list[ListedObject]]:
        """Yield the objects whose names start with ``prefix``, one page per request."""

    @abstractmethod
    def _delete_objects(self, names: Sequence[str]) -> Mapping[str, str]:
        """Delete up to ``delete_batch_size`` names in one request; return ``{name: reason}`` of failures."""

    @abstractmethod
    def _head_object(self, name: str) -> Mapping[str, str] | None:
        """Read only the metadata of ``name``; None when it does not exist."""

    async def _offload(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking primitive on the shared I/O thread pool (see :data:`OFFLOAD_THREADS`)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(_io_pool(), partial(context.run, function, *args))

    async def _aput_object(
        self, name: str, data: bytes, metadata: Mapping[str, str], expires_at: datetime | None
    ) -> None:
        await self._offload(self._put_object, name, data, metadata, expires_at)

    async def _aget_object(self, name: str) -> StoredObject | None:
        return await self._offload(self._get_object, name)

    async def _adelete_object(self, name: str) -> None:
        await self._offload(self._delete_object, name)

    async def _alist_objects(self, prefix: str) -> AsyncIterator[list[ListedObject]]:
        pages = self._list_objects(prefix)
        while (page := await self._offload(next, pages, None)) is not None:
            yield page

    async def _adelete_objects(self, names: Sequence[str]) -> Mapping[str, str]:
        return await self._offload(self._delete_objects, names)

    async def _ahead_object(self, name: str) -> Mapping[str, str] | None:
        return await self._offload(self._head_object, name)

    # -- BaseStoreBackend primitives, on top of the object primitives ------------------------------------

    def _get(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        name = self.object_name(scope, key)
        obj = self._get_object(name)
        return None if obj is None else self._decode(name, obj)[1]

    def _set(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        name, long_name = self._object_name(scope, key)
        data, metadata = self._encode(long_name, value, expires_at)
        self._put_object(name, data, metadata, expires_at)

    def _delete(self, scope: StoreScope, key: str, session: Any) -> None:
        self._delete_object(self.object_name(scope, key))

    def _clear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        failures: dict[str, str] = {}
        for page in self._list_objects(self._clear_prefix(scope, all_map_indices)):
            for batch in batched([o.name for o in page], self.delete_batch_size):
                failures.update(self._delete_objects(batch))
        self._raise_failures("clear", failures)

    def _keys(self, scope: StoreScope, session: Any) -> list[str]:
        return [
            self._key_of(o.name, self._get_object(o.name) if self._key_shortened(o.name) else None)
            for page in self._list_objects(self._scope_dir(scope))
            for o in page
        ]

    async def _aget(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        name = self.object_name(scope, key)
        obj = await self._aget_object(name)
        return None if obj is None else self._decode(name, obj)[1]

    async def _aset(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        name, long_name = self._object_name(scope, key)
        data, metadata = self._encode(long_name, value, expires_at)
        await self._aput_object(name, data, metadata, expires_at)

    async def _adelete(self, scope: StoreScope, key: str, session: Any) -> None:
        await self._adelete_object(self.object_name(scope, key))

    async def _aclear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        failures: dict[str, str] = {}
        async for page in self._alist_objects(self._clear_prefix(scope, all_map_indices)):
            for batch in batched([o.name for o in page], self.delete_batch_size):
                failures.update(await self._adelete_objects(batch))
        self._raise_failures("clear", failures)

    async def _akeys(self, scope: StoreScope, session: Any) -> list[str]:
        keys = []
        async for page in self._alist_objects(self._scope_dir(scope)):
            for o in page:
                keys.append(
                    self._key_of(o.name, await self._aget_object(o.name) if self._key_shortened(o.name) else None)
                )
        return keys

    def _clear_prefix(self, scope: StoreScope, all_map_indices: bool) -> str:
        return self._scope_dir(scope, all_map_indices and isinstance(scope, TaskScope))

    def _raise_failures(self, operation: str, failures: Mapping[str, str]) -> None:
        if not failures:
            return
        shown = "; ".join(f"{name}: {reason}" for name, reason in list(failures.items())[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        raise StorageError(
            f"{operation} could not delete {len(failures)} object(s) from {self.location}: {shown}{more}. "
            f"Everything else was deleted; run {operation} again to retry the rest."
        )

    def cleanup(  # type: ignore[override]
        self, *, dry_run: bool = False, progress: Callable[[str, int], None] | None = None
    ) -> CleanupResult:
        """Delete every object under the prefix whose recorded expiry has passed; report what went.

        ``dry_run`` only counts them; ``progress(kind, count)`` is called after each delete batch.
        """
        return self._cleanup(utcnow(), dry_run=dry_run, progress=progress)

    def _cleanup(
        self, now: datetime, *, dry_run: bool = False, progress: Callable[[str, int], None] | None = None
    ) -> CleanupResult:
        """Find (and unless ``dry_run``, delete) the objects whose recorded expiry passed before ``now``.

        Costs one list request per page, one metadata read per object when the listing does not
        carry metadata (S3), and one delete request per ``delete_batch_size`` expired objects.
        """
        result = CleanupResult()
        failures: dict[str, str] = {}
        expired: list[str] = []

        def flush(batch: Sequence[str]) -> None:
            if dry_run:
                for name in batch:
                    result.add(self._expired_kind(name), 1)
            else:
                failures.update(self._count_deleted(result, batch))
            if progress is not None:
                for kind, count in Counter(self._expired_kind(name) for name in batch).items():
                    progress(kind, count)

        for page in (p for top in ("task/", "asset/") for p in self._list_objects(self._root + top)):
            for listed in page:
                metadata = listed.metadata if listed.metadata is not None else self._head_object(listed.name)
                if metadata is not None and is_expired(_parse_expiry(listed.name, metadata.get(META_EXPIRES_AT)), now):
                    expired.append(listed.name)
            while len(expired) >= self.delete_batch_size:
                batch, expired = expired[: self.delete_batch_size], expired[self.delete_batch_size :]
                flush(batch)
        if expired:
            flush(expired)
        self._raise_failures("cleanup", failures)
        return result

    def _expired_kind(self, name: str) -> str:
        """``expired_task`` or ``expired_asset`` for an object name under the root."""
        return "expired_" + name[len(self._root) :].partition("/")[0]

    def _count_deleted(self, result: CleanupResult, batch: Sequence[str]) -> Mapping[str, str]:
        failed = self._delete_objects(batch)
        for name in batch:
            if name not in failed:
                result.add(self._expired_kind(name), 1)
        return failed

    # -- worker-side references ----------------------------------------------------------------------

    versioned_references: ClassVar[bool] = True

    def _keeps_inline(self, value_json: str, allow_inline: bool) -> bool:
        """Values under ``threshold`` UTF-8 bytes stay inline when the caller allows it."""
        return allow_inline and self.threshold > 0 and len(value_json.encode("utf-8")) < self.threshold

    def _new_value(
        self, scope: StoreScope, key: str, value_json: str, expires_at: datetime | None
    ) -> tuple[str, bytes, dict[str, str], datetime | None]:
        """Name, body, metadata and expiry (the row's plus the margin) of a new version of ``(scope, key)``."""
        expiry = version_expiry(expires_at)
        name, long_name = self._value_name(identity_scope(to_scope(scope)), validate_key(key), new_version())
        data, metadata = self._encode(long_name, check_value(value_json), expiry)
        return name, data, metadata, expiry

    def store_value(
        self,
        scope: StoreScope,
        key: str,
        value_json: str,
        *,
        expires_at: datetime | None = None,
        allow_inline: bool = True,
    ) -> str | None:
        """Write a new version of ``(scope, key)`` (one request) and return its reference; see the module docstring."""
        if self._keeps_inline(value_json, allow_inline):
            return None
        name, data, metadata, expiry = self._new_value(scope, key, value_json, expires_at)
        self._put_object(name, data, metadata, expiry)
        return self._reference(name)

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
        name, data, metadata, expiry = self._new_value(scope, key, value_json, expires_at)
        await self._aput_object(name, data, metadata, expiry)
        return self._reference(name)

    def check_reference(self, reference: str, scope: StoreScope, key: str) -> None:
        """Refuse a reference not written for ``(scope, key)``, by comparing names (no request, even when shortened)."""
        name = self._name_from_reference(reference)
        version = self._split_version(name[len(self._root) :].split("/"))[1]
        wanted = to_scope(scope)
        if self._expected_name(wanted, validate_key(key), version) != name:
            raise InvalidReferenceError(
                f"{type(self).__name__} refuses reference {reference!r} for key {key!r} of {wanted!r}: "
                "it was written for another scope or key"
            )

    def _checked_name(self, reference: str, scope: StoreScope | None, key: str | None) -> str:
        if (scope is None) != (key is None):
            raise TypeError("load_value takes both scope= and key= (to check the reference against), or neither")
        if scope is not None and key is not None:
            self.check_reference(reference, scope, key)
        return self._name_from_reference(reference)

    def load_value(self, reference: str, *, scope: StoreScope | None = None, key: str | None = None) -> str:
        """Read the value behind a reference with exactly one request (checked against ``scope``/``key`` when given)."""
        name = self._checked_name(reference, scope, key)
        return self._loaded(reference, name, self._get_object(name))

    async def aload_value(self, reference: str, *, scope: StoreScope | None = None, key: str | None = None) -> str:
        """Async twin of :meth:`load_value`."""
        name = self._checked_name(reference, scope, key)
        return self._loaded(reference, name, await self._aget_object(name))

    def _loaded(self, reference: str, name: str, obj: StoredObject | None) -> str:
        return live_value(reference, None if obj is None else self._decode(name, obj)[1])

    def resolve_reference(self, reference: str) -> tuple[StoreScope, str]:
        """The ``(scope, key)`` a reference names; reads the object only when its name was shortened."""
        name = self._name_from_reference(reference)
        path, version = self._split_version(name[len(self._root) :].split("/"))
        relative = "/".join(path)
        if "~" in relative:
            relative = self._long_name_of(name, self._get_object(name))
        try:
            scope, key = parse_path(relative.split("/"))
        except ValueError as exc:
            raise InvalidReferenceError(f"{type(self).__name__} refuses reference {reference!r}: {exc}") from exc
        if self._expected_name(scope, key, version) != name:
            raise InvalidReferenceError(
                f"{type(self).__name__} refuses reference {reference!r}: its recorded name does not match"
            )
        return scope, key

    def discard_value(self, reference: str) -> None:
        """Delete exactly the object ``reference`` names (one request); a missing object is not an error."""
        self._delete_object(self._name_from_reference(reference))

    async def adiscard_value(self, reference: str) -> None:
        """Async twin of :meth:`discard_value`."""
        await self._adelete_object(self._name_from_reference(reference))

    def _discard_batches(self, references: Iterable[str]) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
        """``({name: reference} of one batch, {reference: reason} of refused references)``, batch by batch."""
        refused: dict[str, str] = {}
        batch: dict[str, str] = {}
        for reference in references:
            try:
                batch[self._name_from_reference(reference)] = reference
            except InvalidReferenceError as exc:
                refused[reference] = str(exc)
            if len(batch) == self.delete_batch_size:
                yield batch, refused
                batch, refused = {}, {}
        if batch or refused:
            yield batch, refused

    @staticmethod
    def _batch_failures(batch: Mapping[str, str], outcome: Mapping[str, str] | StateStoreError) -> dict[str, str]:
        """``{reference: reason}`` of one batch's failed names (every name when the request itself failed)."""
        if isinstance(outcome, StateStoreError):
            return dict.fromkeys(batch.values(), str(outcome))
        return {batch[name]: reason for name, reason in outcome.items()}

    def discard_values(self, references: Iterable[str]) -> dict[str, str]:
        """Delete the objects named, ``delete_batch_size`` per request; return ``{reference: reason}`` of failures.

        ``ceil(N / delete_batch_size)`` requests (S3: 1000 names per ``DeleteObjects``, GCS: 100 per
        batch request). A failed request fails its batch only; the other batches still run.
        """
        failures: dict[str, str] = {}
        for batch, refused in self._discard_batches(references):
            failures.update(refused)
            if batch:
                try:
                    outcome: Mapping[str, str] | StateStoreError = self._delete_objects(list(batch))
                except StateStoreError as exc:
                    outcome = exc
                failures.update(self._batch_failures(batch, outcome))
        return failures

    async def adiscard_values(self, references: Iterable[str]) -> dict[str, str]:
        """Async twin of :meth:`discard_values`."""
        failures: dict[str, str] = {}
        for batch, refused in self._discard_batches(references):
            failures.update(refused)
            if batch:
                try:
                    outcome: Mapping[str, str] | StateStoreError = await self._adelete_objects(list(batch))
                except StateStoreError as exc:
                    outcome = exc
                failures.update(self._batch_failures(batch, outcome))
        return failures

    def iter_values(self) -> Iterator[list[StoredValue]]:
        """Every version under ``<prefix>/ref/``, one listing page (one request) at a time, with its write time."""
        for page in self._list_objects(f"{self._root}{VALUES_NAMESPACE}/"):
            values = []
            for listed in page:
                try:
                    written_at = version_written_at(listed.name.rpartition("/")[2])
                except ValueError:  # not a name this layer writes: never statestore's to reclaim
                    continue
                values.append(StoredValue(self._reference(listed.name), written_at))
            if values:
                yield values
