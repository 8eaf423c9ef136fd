"""The Redis key layout: injective, cluster-safe names for values and their per-scope indexes.

For a key prefix ``P`` (default ``statestore:``), a task scope ``(dag, run, task, map_index)`` and
an asset scope (identified like everywhere in statestore by the first of name, uri, asset_id):

=====================  ==========================================================
value of a task key    ``P{task/<dag>/<run>/<task>}/<map_index>/<key>``
value of an asset key  ``P{asset/name/<name>}/<key>`` (or ``asset/uri/…``, ``asset/id/…``)
index of one scope     ``<scope>#keys`` — sorted set: encoded key -> expiry (ms, ``inf``)
map indices of a task  ``P{task/<dag>/<run>/<task>}#maps`` — sorted set: map index -> latest expiry
worker-side version    ``Pref:{task/<dag>/<run>/<task>}/<map_index>/<key>/<version>``, ``Pref:{asset/…}/<key>/<v>``
=====================  ==========================================================

Worker-side values (the worker role) are write-once *versions*, one key per ``store_value``, under
``Pref:`` — a namespace the server role never writes (its names continue ``P{``), in the slot of
their scope's hash tag. ``<version>`` is :func:`statestore.core.naming.new_version`.

Every id and key is percent-encoded with :func:`statestore.core.naming.encode_segment`, so a
segment never contains ``/``, ``#``, ``{`` or ``}``: the names parse back unambiguously (hence
are injective), an index never collides with a value, and the ``{…}`` hash tag always covers
exactly the task (all map indices) or the asset, so all its keys share one Redis Cluster slot.
"""

from __future__ import annotations

import re
from functools import lru_cache

from statestore.core.errors import ConfigurationError
from statestore.core.naming import encode_segment, parse_path, scope_path, version_written_at
from statestore.core.scopes import StoreScope, TaskScope

__all__ = ["KeyLayout"]

INDEX_SUFFIX = "#keys"
MAPS_SUFFIX = "#maps"
VERSIONS = "ref:"


@lru_cache(maxsize=4096)
def _names(prefix: str, scope: StoreScope) -> tuple[str, str, tuple[str, ...]]:
    """The tag, the base and the tracking keys of ``scope`` (cached: encoding ids is the costly part of naming)."""
    tag = f"{prefix}{{{'/'.join(scope_path(scope, all_map_indices=True))}}}"
    if isinstance(scope, TaskScope):
        base = f"{tag}/{scope.map_index}"
        return tag, base, (base + INDEX_SUFFIX, tag + MAPS_SUFFIX)
    return tag, tag, (tag + INDEX_SUFFIX,)


_encode_key = lru_cache(maxsize=4096)(encode_segment)


@lru_cache(maxsize=4096)
def _command_keys(prefix: str, scope: StoreScope, key: str) -> tuple[bytes, ...]:
    """The value key of ``(scope, key)`` then the tracking keys of ``scope``, UTF-8 encoded (cached).

    get/set/delete send these: one cache lookup names them all, and redis-py passes bytes on as they
    are (a ``str`` argument goes through its type checks and encoding on every command).
    """
    _, base, tracking = _names(prefix, scope)
    return tuple(name.encode() for name in (f"{base}/{_encode_key(key)}", *tracking))


_TASK_INDEX = re.compile(r"(.*\})/-?[0-9]+" + re.escape(INDEX_SUFFIX))
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class KeyLayout:
    """Names the Redis keys of ``(scope, key)`` pairs under one key prefix, and parses value keys back."""

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"[statestore_redis] key_prefix must not contain '{{' or '}}' (it would break the cluster "
                f"hash tags), got {prefix!r}; use e.g. 'statestore:'"
            )
        self.prefix = prefix

    def tag(self, scope: StoreScope) -> str:
        """``P{…}``: the prefix and hash tag shared by every key of the task (all map indices) or asset."""
        return _names(self.prefix, scope)[0]

    def value_key(self, scope: StoreScope, key: str) -> str:
        """The Redis string holding the value of ``(scope, key)``."""
        return f"{_names(self.prefix, scope)[1]}/{_encode_key(key)}"

    def command_keys(self, scope: StoreScope, key: str) -> tuple[bytes, ...]:
        """:meth:`value_key`, then :meth:`tracking_keys` (what a write touches), as the bytes sent to Redis."""
        return _command_keys(self.prefix, scope, key)

    def index_key(self, scope: StoreScope) -> str:
        """The sorted set listing the (encoded) keys of ``scope`` with their expiry."""
        return _names(self.prefix, scope)[2][0]

    def tracking_keys(self, scope: StoreScope) -> tuple[str, ...]:
        """The keys a write to ``scope`` keeps up to date: its index and, for a task, the map-index set."""
        return _names(self.prefix, scope)[2]

    def maps_key(self, scope: TaskScope) -> str:
        """The sorted set listing the map indices of the task that hold keys."""
        return self.tag(scope) + MAPS_SUFFIX

    def index_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern matching every index under this prefix (glob characters escaped)."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "{*" + INDEX_SUFFIX

    @staticmethod
    def tracking_keys_of_index(index: str) -> tuple[str, ...]:
        """An index name and, for a task's index, its map-index set (as :meth:`tracking_keys` gives them)."""
        task = _TASK_INDEX.fullmatch(index)
        return (index, task.group(1) + MAPS_SUFFIX) if task else (index,)

    def version_key(self, scope: StoreScope, key: str, version: str) -> str:
        """The Redis string holding one worker-side version of ``(scope, key)``."""
        base = _names(self.prefix, scope)[1]
        return f"{self.prefix}{VERSIONS}{base[len(self.prefix) :]}/{_encode_key(key)}/{version}"

    def is_version_key(self, name: str) -> bool:
        """Whether ``name`` is in the worker-side namespace (not whether it is a well-formed version key)."""
        return name.startswith(self.prefix + VERSIONS)

    def parse_version_key(self, name: str) -> tuple[StoreScope, str, str]:
        """Invert :meth:`version_key`: ``(scope, key, version)``; ``ValueError`` for any other name."""
        if not self.is_version_key(name):
            raise ValueError(f"it is not under the key prefix {self.prefix + VERSIONS!r}")
        head, _, version = name.rpartition("/")
        version_written_at(version)  # ValueError unless a version
        scope, key = self.parse_value_key(self.prefix + head[len(self.prefix + VERSIONS) :])
        return scope, key, version

    def version_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern matching every worker-side version under this prefix."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.prefix + VERSIONS) + "{*"

    def parse_value_key(self, name: str) -> tuple[StoreScope, str]:
        """Invert :meth:`value_key`; ``ValueError`` for any name it could not have produced."""
        head = self.prefix + "{"
        if not name.startswith(head):
            raise ValueError(f"it is not under the key prefix {self.prefix!r}")
        tag, closed, tail = name[len(head) :].partition("}")
        if not closed or not tail.startswith("/"):
            raise ValueError("it is not a statestore value key")
        scope, key = parse_path([*tag.split("/"), *tail[1:].split("/")])
        if self.value_key(scope, key) != name:
            raise ValueError("it is not in canonical form")
        return scope, key
