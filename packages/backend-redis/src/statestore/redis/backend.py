"""``RedisStoreBackend``: task and asset state on Redis, as a server-side store or a worker-side backend.

Each value is a Redis string ``<expiry ms>:<JSON>`` (see :mod:`.layout` for the names) carrying a native
Redis expiry, so expired values vanish with no ``cleanup()``. A per-scope sorted set indexes the keys so
that ``clear`` costs in proportion to the scope's own keys. ``get`` is one ``GET``; ``set`` and
``delete`` are one ``EVALSHA`` each (see :mod:`.scripts`); ``clear`` and ``cleanup`` work in chunks of
bounded server time. Everything goes through redis-py's public client API: a single node
(``redis.Redis``), Redis Cluster (``redis.cluster.RedisCluster``) or a Sentinel-managed primary, and
their ``redis.asyncio`` twins for the async methods.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.exceptions import NoScriptError, RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from statestore.core.base import (
    CleanupResult,
    StoredEntry,
    StoredValue,
    live_value,
    utcnow,
    version_expiry,
)
from statestore.core.config import Config, mask_secret
from statestore.core.errors import ConfigurationError, InvalidReferenceError, StateStoreError, StorageError
from statestore.core.naming import VERSION_LENGTH, decode_segment, new_version, validate_key, version_written_at
from statestore.core.primitive import PrimitiveStoreBackend
from statestore.core.scopes import StoreScope, TaskScope, to_scope
from statestore.core.settings import resolve
from statestore.core.values import check_value
from statestore.redis.layout import KeyLayout
from statestore.redis.plugin import SECTION, SETTINGS
from statestore.redis.scripts import CLEAR_CHUNK, DELETE, PRUNE_CHUNK, SET

__all__ = ["CHUNK", "SECTION", "RedisStoreBackend"]

CHUNK = 500
"""Index entries handled per ``CLEAR_CHUNK``/``PRUNE_CHUNK`` call: about a millisecond of server time."""

_VERSION_TAIL = re.compile(rf"}}/.+/[0-9a-f]{{{VERSION_LENGTH}}}\Z")
"""How every version key ends: after its hash tag, a key segment and ``/<version>``."""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)
_RETRYABLE = (redis.ConnectionError, redis.TimeoutError, OSError)  # OSError: redis-py 5.0 connects outside its retry


def _expiry_ms(expires_at: datetime | None) -> str:
    """Epoch milliseconds for ``PXAT`` ('' = never), rounded down: a value never outlives its expiry."""
    return "" if expires_at is None else str((expires_at - _EPOCH) // _MILLISECOND)


def _entry(raw: Any) -> StoredEntry | None:
    """Parse a stored string, ``<expiry ms or nothing>:<JSON text>``, back into an entry.

    The expiry travels inside the value so that ``get`` stays one plain ``GET``; Redis expires
    the key natively at the same instant.
    """
    if raw is None:
        return None
    expiry, _, value = bytes(raw).decode("utf-8").partition(":")
    return StoredEntry(value, _EPOCH + int(expiry) * _MILLISECOND if expiry else None)


def _decode_members(members: Any) -> list[str]:
    """The store keys named by index members (encoded segments)."""
    return [decode_segment(bytes(m).decode()) for m in members]


def _parse_sentinels(text: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as a list of addresses; ``ConfigurationError`` saying what is wrong."""
    addresses = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"[{SECTION}] sentinels must be host:port,host:port (e.g. 10.0.0.1:26379,10.0.0.2:26379), got {text!r}"
            )
        addresses.append((host.strip("[]"), int(port)))
    return addresses


_REDIS_ERRORS = (redis.RedisError, RedisClusterException)


def _storage_error(location: str, operation: str, exc: BaseException) -> StorageError:
    """The ``StorageError`` for a redis-py error left after retries: operation, server, cause (password masked)."""
    return StorageError(
        f"Redis {operation} failed at {location}: {type(exc).__name__}: {mask_secret('url', str(exc))}. "
        f"Check that the server is reachable and the [{SECTION}] settings are right."
    )


class _Errors:
    """Turns a redis-py error into ``StorageError`` naming the operation and the server (a plain class: cheap)."""

    __slots__ = ("location", "operation")

    def __init__(self, location: str, operation: str) -> None:
        self.location = location
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, _REDIS_ERRORS):
            raise _storage_error(self.location, self.operation, exc) from exc


def _pools(client: Any) -> list[Any]:
    """The connection pools closing ``client`` leaves open: ours, and a Sentinel client's to the sentinels."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return []
    manager = getattr(pool, "sentinel_manager", None)
    return [pool, *(sentinel.connection_pool for sentinel in getattr(manager, "sentinels", ()))]


class _Side:
    """A client and the scripts registered with it: the sync one, or one event loop's."""

    __slots__ = ("clear", "client", "delete", "guard", "prune", "ready", "set")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.guard: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[None] | None = None  # an async cluster client's first topology discovery
        self.set = client.register_script(SET)
        self.delete = client.register_script(DELETE)
        self.clear = client.register_script(CLEAR_CHUNK)
        self.prune = client.register_script(PRUNE_CHUNK)


class RedisStoreBackend(PrimitiveStoreBackend):
    """Redis strings with native expiry and per-scope indexes; see the module docstring.

    Settings come from ``[statestore_redis]`` (declared once in ``statestore.redis.plugin.SETTINGS``:
    names, types, defaults, docs); keyword arguments of the same names override them, and the
    no-argument constructor works from configuration alone. Connections open
    lazily and are borrowed from redis-py's pool per operation; connection errors and timeouts are
    retried with exponential backoff (every operation is idempotent, so a retry after a lost reply
    is safe).
    """

    name = "redis"
    reference_scheme = "redis"
    settings = SETTINGS

    def __init__(
        self,
        url: str | None = None,
        *,
        key_prefix: str | None = None,
        username: str | None = None,
        password: str | None = None,
        client_name: str | None = None,
        socket_timeout: float | None = None,
        socket_connect_timeout: float | None = None,
        retry_attempts: int | None = None,
        retry_backoff_base: float | None = None,
        retry_backoff_cap: float | None = None,
        max_connections: int | None = None,
        cluster: bool | None = None,
        sentinels: str | None = None,
        service_name: str | None = None,
        sentinel_password: str | None = None,
        wait_replicas: int | None = None,
        wait_timeout: float | None = None,
        config: Config | None = None,
    ) -> None:
        super().__init__(config=config)
        given = {
            "url": url,
            "key_prefix": key_prefix,
            "username": username,
            "password": password,
            "client_name": client_name,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "retry_attempts": retry_attempts,
            "retry_backoff_base": retry_backoff_base,
            "retry_backoff_cap": retry_backoff_cap,
            "max_connections": max_connections,
            "cluster": cluster,
            "sentinels": sentinels,
            "service_name": service_name,
            "sentinel_password": sentinel_password,
            "wait_replicas": wait_replicas,
            "wait_timeout": wait_timeout,
        }
        settings = resolve(self.config, SECTION, SETTINGS, given, owner=type(self).__name__)
        self.url: str = settings["url"] or ""
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"[{SECTION}] url must start with redis://, rediss:// or unix://, got {mask_secret('url', self.url)!r}"
            )
        self.layout = KeyLayout(settings["key_prefix"])
        self._backoff = (settings["retry_attempts"], settings["retry_backoff_base"], settings["retry_backoff_cap"])
        self.cluster: bool = settings["cluster"]
        self.sentinels = _parse_sentinels(settings["sentinels"])
        self.service_name: str = settings["service_name"]
        self._sentinel_password: str | None = settings["sentinel_password"]
        self.wait_replicas: int = settings["wait_replicas"]
        self.wait_timeout: float = settings["wait_timeout"]
        self._check_topology()
        options: dict[str, Any] = {
            key: settings[key]
            for key in ("username", "password", "client_name", "socket_timeout", "socket_connect_timeout")
        }
        options["max_connections"] = settings["max_connections"] or None
        # redis-py lets settings in the URL (credentials, ?socket_timeout=...) win over these.
        self._options = {k: v for k, v in options.items() if v not in (None, "")}
        try:
            parse_url(self.url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise ConfigurationError(f"[{SECTION}] url {mask_secret('url', self.url)!r} is invalid: {exc}") from None
        if self.sentinels:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            self._location = f"sentinel://{hosts}/{self.service_name} {mask_secret('url', self.url)}"
        else:
            self._location = ("cluster " if self.cluster else "") + mask_secret("url", self.url)
        self._location += f" key_prefix={self.key_prefix}"
        self._lock = threading.Lock()
        self._sync_side: _Side | None = None
        self._async_sides: dict[asyncio.AbstractEventLoop, _Side] = {}

    # -- configuration -------------------------------------------------------------------------------

    def _check_topology(self) -> None:
        """Refuse settings that name two topologies, or half of one."""
        if self.cluster and self.sentinels:
            raise ConfigurationError(
                f"[{SECTION}] cluster = True and sentinels are both set; Redis Cluster and Sentinel exclude each "
                "other: keep one of them"
            )
        if bool(self.sentinels) != bool(self.service_name):
            raise ConfigurationError(
                f"[{SECTION}] sentinels and service_name go together (the Sentinel addresses and the name of the "
                "primary they monitor, e.g. sentinels = 10.0.0.1:26379,10.0.0.2:26379 and service_name = mymaster)"
            )
        if self.cluster and self.wait_replicas:
            raise ConfigurationError(
                f"[{SECTION}] wait_replicas is for a single node or Sentinel; with cluster = True set it to 0 and "
                "fail over with CLUSTER FAILOVER (which waits for the replica to catch up)"
            )

    @property
    def key_prefix(self) -> str:
        """The prefix of every Redis key this backend writes."""
        return self.layout.prefix

    @property
    def location(self) -> str:
        """The server (password masked), the topology and the key prefix: where this backend keeps data."""
        return self._location

    # -- clients ---------------------------------------------------------------------------------------

    def _sentinel_kwargs(self) -> dict[str, Any]:
        """How to reach the primary behind Sentinel: db, credentials and TLS from ``url``, plus the options."""
        parsed = parse_url(self.url)  # type: ignore[no-untyped-call]
        kwargs = {k: parsed[k] for k in ("db", "username", "password") if parsed.get(k) is not None}
        return {**kwargs, **self._options, "ssl": self.url.startswith("rediss://")}

    def _sentinel_options(self) -> dict[str, Any]:
        timeouts: dict[str, Any] = {
            k: self._options[k] for k in ("socket_timeout", "socket_connect_timeout") if k in self._options
        }
        return {**timeouts, "password": self._sentinel_password} if self._sentinel_password else timeouts

    def _retrying(self, retry_class: Any) -> dict[str, Any]:
        """The retry options of a client: redis-py 5.0's asyncio client retries only errors in ``retry_on_error``."""
        attempts, base, cap = self._backoff
        retry = retry_class(ExponentialBackoff(cap, base), attempts, _RETRYABLE)
        return {"retry": retry, "retry_on_error": list(_RETRYABLE)}

    def _new_sync_client(self) -> Any:
        retrying = self._retrying(Retry)
        if self.cluster:
            return RedisCluster.from_url(self.url, **retrying, **self._options)
        if self.sentinels:
            sentinel = Sentinel(self.sentinels, sentinel_kwargs=self._sentinel_options(), **retrying)  # type: ignore[no-untyped-call]
            return sentinel.master_for(self.service_name, **self._sentinel_kwargs())  # type: ignore[no-untyped-call]
        # A blocking pool makes max_connections a cap on concurrent operations (callers wait their turn).
        pool_class = redis.BlockingConnectionPool if "max_connections" in self._options else redis.ConnectionPool
        return redis.Redis(connection_pool=pool_class.from_url(self.url, **retrying, **self._options))

    def _new_async_client(self) -> Any:
        retrying = self._retrying(AsyncRetry)
        if self.cluster:
            return AsyncRedisCluster.from_url(self.url, **retrying, **self._options)
        if self.sentinels:
            sentinel = AsyncSentinel(self.sentinels, sentinel_kwargs=self._sentinel_options(), **retrying)  # type: ignore[no-untyped-call]
            return sentinel.master_for(self.service_name, **self._sentinel_kwargs())
        pool_class = aredis.BlockingConnectionPool if "max_connections" in self._options else aredis.ConnectionPool
        return aredis.Redis(connection_pool=pool_class.from_url(self.url, **retrying, **self._options))

    def _sync(self) -> _Side:
        """The sync client (thread-safe; each command borrows a pooled connection) and its scripts."""
        side = self._sync_side
        if side is None:
            with self._lock:
                if self._sync_side is None:
                    with self._errors("CONNECT"):
                        self._sync_side = _Side(self._new_sync_client())
                side = self._sync_side
        return side

    async def _async(self) -> _Side:
        """The running event loop's client (redis.asyncio connections belong to one loop) and its scripts.

        A guard task, cancelled when the loop shuts down (``asyncio.run``, ``asyncio.Runner`` and
        pytest-asyncio cancel pending tasks before closing), closes the client inside that loop;
        clients of loops closed without that are dropped here, so none outlives its loop for long.
        An async cluster client discovers the topology once, before any command: redis-py's async
        RedisCluster fails commands issued concurrently with its first discovery.
        """
        loop = asyncio.get_running_loop()
        side = self._async_sides.get(loop)
        if side is None:
            for closed in [other for other in self._async_sides if other.is_closed()]:
                del self._async_sides[closed]
            with self._errors("CONNECT"):
                side = _Side(self._new_async_client())
            side.ready = loop.create_future() if self.cluster else None
            side.guard = loop.create_task(self._guard(loop, side))
            self._async_sides[loop] = side
        if side.ready is not None:
            with self._errors("CONNECT"):
                await asyncio.shield(side.ready)
        return side

    async def _guard(self, loop: asyncio.AbstractEventLoop, side: _Side) -> None:
        """Discover a cluster's topology, then wait for the loop's shutdown and close the client."""
        try:
            if side.ready is not None:
                try:
                    await side.client.initialize()
                except (redis.RedisError, RedisClusterException, OSError) as exc:
                    side.ready.set_exception(exc)  # the waiting operations raise it; the next one starts afresh
                    return
                side.ready.set_result(None)
                side.ready = None
            await asyncio.Event().wait()
        finally:
            if side.ready is not None and not side.ready.done():
                side.ready.cancel()
            if self._async_sides.get(loop) is side:
                del self._async_sides[loop]
            if loop.is_closed():  # collected after an abrupt loop.close(): nothing can be awaited any more
                return  # noqa: B012
            await side.client.aclose()
            for pool in _pools(side.client):
                await pool.disconnect()

    def close(self) -> None:
        """Close the sync connections (they reopen on next use)."""
        with self._lock:
            side, self._sync_side = self._sync_side, None
        if side is not None:
            side.client.close()
            for pool in _pools(side.client):
                pool.disconnect()

    async def aclose(self) -> None:
        """Close the asyncio connections of the running event loop (they reopen on next use)."""
        side = self._async_sides.get(asyncio.get_running_loop())
        if side is not None and side.guard is not None:
            side.guard.cancel()
            await asyncio.wait([side.guard])  # the guard closes the client; its cancellation stays inside it

    def _errors(self, operation: str) -> _Errors:
        """A context turning redis-py errors (left after retries) into ``StorageError``, password masked.

        get/set/delete catch the errors themselves (``_failed``): a ``try`` costs nothing until
        something fails, a ``with`` two Python calls per operation.
        """
        return _Errors(self.location, operation)

    def _failed(self, operation: str, exc: BaseException) -> StorageError:
        return _storage_error(self.location, operation, exc)

    def _check_acked(self, operation: str, acked: int) -> None:
        if acked < self.wait_replicas:
            raise StorageError(
                f"Redis {operation} at {self.location} reached {acked} of wait_replicas = {self.wait_replicas} "
                f"replicas within wait_timeout = {self.wait_timeout} s, so it is not acknowledged (a failover could "
                "lose it); check the replicas, then retry"
            )

    def _forgotten(self, operation: str) -> StorageError:
        return StorageError(f"Redis {operation} at {self.location}: the server keeps forgetting the script")

    def _run(self, operation: str, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered script by its SHA1 (``EVALSHA``), loading it again after a ``NOSCRIPT`` reply.

        With ``wait_replicas``, in one pipeline with ``WAIT`` on the same connection. The client's
        ``evalsha`` is called directly rather than through the ``Script`` object, whose call checks
        for a pipeline with an ``isinstance`` on a Protocol class: several µs per write.
        """
        client = script.registered_client
        for _ in range(2):
            try:
                if not self.wait_replicas:
                    return client.evalsha(script.sha, len(keys), *keys, *args)
                pipe = client.pipeline(transaction=False)
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.wait(self.wait_replicas, int(self.wait_timeout * 1000))
                result, acked = pipe.execute()
            except NoScriptError:
                script.sha = client.script_load(script.script)
                continue
            self._check_acked(operation, acked)
            return result
        raise self._forgotten(operation)

    async def _arun(self, operation: str, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Async twin of :meth:`_run`."""
        client = script.registered_client
        for _ in range(2):
            try:
                if not self.wait_replicas:
                    return await client.evalsha(script.sha, len(keys), *keys, *args)
                pipe = client.pipeline(transaction=False)
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.wait(self.wait_replicas, int(self.wait_timeout * 1000))
                result, acked = await pipe.execute()
            except NoScriptError:
                script.sha = await client.script_load(script.script)
                continue
            self._check_acked(operation, acked)
            return result
        raise self._forgotten(operation)

    # -- script arguments, shared by sync and async ---------------------------------------------------

    @staticmethod
    def _stored(value: str, expires_at: datetime | None) -> tuple[bytes]:
        """The ``SET`` script's argument: the string stored, ``<expiry ms or nothing>:<JSON>``, as UTF-8."""
        return ((":" + value).encode() if expires_at is None else f"{_expiry_ms(expires_at)}:{value}".encode(),)

    @staticmethod
    def _map_scopes(scope: TaskScope, map_indices: list[bytes]) -> list[TaskScope]:
        return [TaskScope(scope.dag_id, scope.run_id, scope.task_id, int(mi)) for mi in map_indices]

    @staticmethod
    def _live_min() -> str:
        """The ``ZRANGEBYSCORE`` lower bound that skips index entries already expired."""
        return f"({_expiry_ms(utcnow())}"

    # -- sync primitives ------------------------------------------------------------------------------

    # get/set/delete are the hot path: no work beyond naming the keys (the public methods validated
    # the arguments), and the error translation of ``_errors`` as a ``try`` (free until it fails).

    def _get(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        try:
            raw = (self._sync_side or self._sync()).client.get(self.layout.command_keys(scope, key)[0])
        except _REDIS_ERRORS as exc:
            raise self._failed("GET", exc) from exc
        return _entry(raw)

    def _set(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        side = self._sync_side or self._sync()
        try:
            self._run("SET", side.set, self.layout.command_keys(scope, key), self._stored(value, expires_at))
        except _REDIS_ERRORS as exc:
            raise self._failed("SET", exc) from exc

    def _delete(self, scope: StoreScope, key: str, session: Any) -> None:
        side = self._sync_side or self._sync()
        try:
            self._run("DELETE", side.delete, self.layout.command_keys(scope, key), ())
        except _REDIS_ERRORS as exc:
            raise self._failed("DELETE", exc) from exc

    def _clear_index(self, scope: StoreScope) -> None:
        """Delete the values of one index, CHUNK per script call, until a call finds fewer."""
        keys = list(self.layout.tracking_keys(scope))
        while self._run("CLEAR", self._sync().clear, keys, [str(CHUNK)]) >= CHUNK:
            pass

    def _clear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        with self._errors("CLEAR"):
            if not (all_map_indices and isinstance(scope, TaskScope)):
                self._clear_index(scope)
                return
            maps = self.layout.maps_key(scope)
            while map_indices := self._sync().client.zrange(maps, 0, CHUNK - 1):
                for map_scope in self._map_scopes(scope, map_indices):  # each leaves the set once emptied
                    self._clear_index(map_scope)

    def _keys(self, scope: StoreScope, session: Any) -> list[str]:
        with self._errors("ZRANGEBYSCORE"):
            members = self._sync().client.zrangebyscore(self.layout.index_key(scope), self._live_min(), "+inf")
        return _decode_members(members)

    def _get_many(self, items: Sequence[tuple[StoreScope, str]], session: Any) -> list[str | None]:
        """One pipeline of ``GET``s (one round trip per node): reconciliation asks a page of rows at once."""
        with self._errors("GET"):
            pipe = self._sync().client.pipeline(transaction=False)
            for scope, key in items:
                pipe.get(self.layout.value_key(scope, key))
            entries = [_entry(raw) for raw in pipe.execute()]
        return [None if entry is None else entry.value for entry in entries]

    def _cleanup(self, now: datetime) -> CleanupResult:
        """Prune index entries of values Redis already expired, on every primary, CHUNK per script call."""
        result = CleanupResult()
        with self._errors("CLEANUP"):
            side = self._sync()
            for index in side.client.scan_iter(match=self.layout.index_pattern(), count=1000):
                keys = list(self.layout.tracking_keys_of_index(index.decode()))
                while True:
                    removed = self._run("CLEANUP", side.prune, keys, [str(CHUNK)])
                    result.add("expired_index_entries", removed)
                    if removed < CHUNK:
                        break
        return result

    # -- async primitives -----------------------------------------------------------------------------

    async def _aget(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        side = await self._async()
        try:
            raw = await side.client.get(self.layout.command_keys(scope, key)[0])
        except _REDIS_ERRORS as exc:
            raise self._failed("GET", exc) from exc
        return _entry(raw)

    async def _aset(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        side = await self._async()
        try:
            await self._arun("SET", side.set, self.layout.command_keys(scope, key), self._stored(value, expires_at))
        except _REDIS_ERRORS as exc:
            raise self._failed("SET", exc) from exc

    async def _adelete(self, scope: StoreScope, key: str, session: Any) -> None:
        side = await self._async()
        try:
            await self._arun("DELETE", side.delete, self.layout.command_keys(scope, key), ())
        except _REDIS_ERRORS as exc:
            raise self._failed("DELETE", exc) from exc

    async def _aclear_index(self, scope: StoreScope) -> None:
        keys = list(self.layout.tracking_keys(scope))
        while await self._arun("CLEAR", (await self._async()).clear, keys, [str(CHUNK)]) >= CHUNK:
            pass

    async def _aclear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        with self._errors("CLEAR"):
            if not (all_map_indices and isinstance(scope, TaskScope)):
                await self._aclear_index(scope)
                return
            maps = self.layout.maps_key(scope)
            while map_indices := await (await self._async()).client.zrange(maps, 0, CHUNK - 1):
                for map_scope in self._map_scopes(scope, map_indices):
                    await self._aclear_index(map_scope)

    async def _akeys(self, scope: StoreScope, session: Any) -> list[str]:
        with self._errors("ZRANGEBYSCORE"):
            members = await (await self._async()).client.zrangebyscore(
                self.layout.index_key(scope), self._live_min(), "+inf"
            )
        return _decode_members(members)

    # -- worker-side references ----------------------------------------------------------------------
    # The worker role writes every value as a new write-once key (``layout.version_key``) that no
    # other write ever replaces, so a delete aimed at an old version never removes a newer one,
    # and one url and key_prefix can serve both roles. References written before versioning name
    # a server-layout value key (``redis://P{…}/…``) and stay readable.

    versioned_references = True

    def _new_version(self, scope: StoreScope, key: str, value_json: str, expires_at: datetime | None) -> list[str]:
        """Name and stored string of a new version; its expiry is the row's plus the margin (None: never)."""
        expiry = version_expiry(expires_at)
        name = self.layout.version_key(to_scope(scope), validate_key(key), new_version())
        return [name, f"{_expiry_ms(expiry)}:{check_value(value_json)}"]

    def _version_command(self, name: str, stored: str) -> list[Any]:
        """``SET name value NX [PXAT ms]``: NX keeps a version write-once even if a name ever repeated."""
        expiry = stored.partition(":")[0]
        return ["SET", name, stored, "NX", *(("PXAT", expiry) if expiry else ())]

    def store_value(
        self,
        scope: StoreScope,
        key: str,
        value_json: str,
        *,
        expires_at: datetime | None = None,
        allow_inline: bool = True,
    ) -> str | None:
        """Write a new version of ``(scope, key)`` (``SET … NX``, and ``WAIT`` if configured); return its reference."""
        name, stored = self._new_version(scope, key, value_json, expires_at)
        with self._errors("SET"):
            client = self._sync().client
            if not self.wait_replicas:
                client.execute_command(*self._version_command(name, stored))
            else:
                pipe = client.pipeline(transaction=False)
                pipe.execute_command(*self._version_command(name, stored))
                pipe.wait(self.wait_replicas, int(self.wait_timeout * 1000))
                self._check_acked("SET", pipe.execute()[1])
        return "redis://" + name

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
        name, stored = self._new_version(scope, key, value_json, expires_at)
        with self._errors("SET"):
            client = (await self._async()).client
            if not self.wait_replicas:
                await client.execute_command(*self._version_command(name, stored))
            else:
                pipe = client.pipeline(transaction=False)
                pipe.execute_command(*self._version_command(name, stored))
                pipe.wait(self.wait_replicas, int(self.wait_timeout * 1000))
                self._check_acked("SET", (await pipe.execute())[1])
        return "redis://" + name

    def _version_name(self, reference: str, scope: StoreScope | None = None, key: str | None = None) -> str | None:
        """The version key a reference names, None for a pre-versioning one; checked against scope/key when given."""
        self._checked(reference, scope, key)
        name = reference[len("redis://") :]
        return name if self.layout.is_version_key(name) else None

    def _listed_version(self, reference: str) -> str | None:
        """The version key of a reference to discard, checked by its shape only (prefix, namespace, version).

        Reconciliation discards thousands per page; parsing each name back costs more than the
        ``UNLINK``, and any key of this shape is one of this backend's versions. Other references
        get the full check of :meth:`_version_name`.
        """
        name = reference[len("redis://") :] if isinstance(reference, str) and reference.startswith("redis://") else ""
        if self.layout.is_version_key(name) and _VERSION_TAIL.search(name):
            return name
        return self._version_name(reference)

    @staticmethod
    def _loaded(reference: str, raw: Any) -> str:
        return live_value(reference, _entry(raw))

    def load_value(self, reference: str, *, scope: StoreScope | None = None, key: str | None = None) -> str:
        """Read the value behind a reference with one ``GET`` (checked against ``scope``/``key`` when given)."""
        name = self._version_name(reference, scope, key)
        if name is None:
            return super().load_value(reference)
        with self._errors("GET"):
            return self._loaded(reference, self._sync().client.get(name))

    async def aload_value(self, reference: str, *, scope: StoreScope | None = None, key: str | None = None) -> str:
        """Async twin of :meth:`load_value`."""
        name = self._version_name(reference, scope, key)
        if name is None:
            return await super().aload_value(reference)
        with self._errors("GET"):
            return self._loaded(reference, await (await self._async()).client.get(name))

    def discard_value(self, reference: str) -> None:
        """Delete exactly the version ``reference`` names (one ``UNLINK``); one already gone is not an error."""
        name = self._version_name(reference)
        if name is None:
            super().discard_value(reference)
            return
        with self._errors("UNLINK"):
            self._sync().client.unlink(name)

    async def adiscard_value(self, reference: str) -> None:
        """Async twin of :meth:`discard_value`."""
        name = self._version_name(reference)
        if name is None:
            await super().adiscard_value(reference)
            return
        with self._errors("UNLINK"):
            await (await self._async()).client.unlink(name)

    def _discard_chunks(self, references: Iterable[str]) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
        """``({version key: reference} of up to CHUNK, {reference: reason} refused)``, chunk by chunk.

        Pre-versioning references are discarded one by one on the way (they are rare and old).
        """
        chunk: dict[str, str] = {}
        refused: dict[str, str] = {}
        for reference in references:
            try:
                name = self._listed_version(reference)
                if name is None:
                    super().discard_value(reference)
                else:
                    chunk[name] = reference
            except StateStoreError as exc:
                refused[reference] = str(exc)
            if len(chunk) == CHUNK:
                yield chunk, refused
                chunk, refused = {}, {}
        if chunk or refused:
            yield chunk, refused

    def discard_values(self, references: Iterable[str]) -> dict[str, str]:
        """Delete the versions named, one ``UNLINK`` of up to 500 keys per request (per slot on a cluster).

        Returns ``{reference: reason}`` for those that could not be deleted; a failed request fails
        its chunk only.
        """
        failures: dict[str, str] = {}
        for chunk, refused in self._discard_chunks(references):
            failures.update(refused)
            try:
                with self._errors("UNLINK"):
                    if chunk:
                        self._sync().client.unlink(*chunk)
            except StorageError as exc:
                failures.update(dict.fromkeys(chunk.values(), str(exc)))
        return failures

    async def adiscard_values(self, references: Iterable[str]) -> dict[str, str]:
        """Async twin of :meth:`discard_values` (pre-versioning references are discarded synchronously)."""
        failures: dict[str, str] = {}
        for chunk, refused in self._discard_chunks(references):
            failures.update(refused)
            try:
                with self._errors("UNLINK"):
                    if chunk:
                        await (await self._async()).client.unlink(*chunk)
            except StorageError as exc:
                failures.update(dict.fromkeys(chunk.values(), str(exc)))
        return failures

    def iter_values(self) -> Iterator[list[StoredValue]]:
        """Every worker-side version under ``Pref:``, ``SCAN`` on every primary, in pages of up to 1000."""
        page: list[StoredValue] = []
        with self._errors("SCAN"):
            for raw in self._sync().client.scan_iter(match=self.layout.version_pattern(), count=1000):
                name = raw.decode()
                if not _VERSION_TAIL.search(name):  # not a name this backend writes: never statestore's to reclaim
                    continue
                page.append(StoredValue("redis://" + name, version_written_at(name[-VERSION_LENGTH:])))
                if len(page) == 1000:
                    yield page
                    page = []
        if page:
            yield page

    def resolve_reference(self, reference: str) -> tuple[StoreScope, str]:
        """The ``(scope, key)`` a reference names; refuse anything this backend did not write under its prefix."""
        if not isinstance(reference, str) or not reference.startswith("redis://"):
            raise InvalidReferenceError(
                f"RedisStoreBackend refuses reference {reference!r}: it does not start with 'redis://'"
            )
        name = reference[len("redis://") :]
        try:
            if self.layout.is_version_key(name):
                return self.layout.parse_version_key(name)[:2]
            return self.layout.parse_value_key(name)
        except ValueError as exc:
            raise InvalidReferenceError(
                f"RedisStoreBackend refuses reference {reference!r}: {exc} "
                f"(this backend only reads value keys under key_prefix {self.key_prefix!r})"
            ) from None
