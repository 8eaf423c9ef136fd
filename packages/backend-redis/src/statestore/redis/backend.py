"""``RedisStoreBackend``: task and asset state on Redis, as a server-side store or a worker-side backend.

Each value is a Redis string ``<expiry ms>:<JSON>`` (see :mod:`.layout` for the names) carrying a native Redis expiry,
so expired values vanish with no ``cleanup()``. A per-scope sorted set indexes the keys so that
``clear`` costs in proportion to the scope's own keys. ``get`` is one ``GET``; ``set`` and
``delete`` are one ``EVALSHA`` each (see :mod:`.scripts`); every operation is one round trip.
The async methods use ``redis.asyncio`` natively with the same layout and scripts.
"""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from statestore.core.base import BaseStoreBackend, StoredEntry, utcnow
from statestore.core.config import Config, mask_secret
from statestore.core.errors import ConfigurationError, InvalidReferenceError, StorageError
from statestore.core.naming import decode_segment
from statestore.core.scopes import StoreScope, TaskScope, to_scope
from statestore.redis.layout import KeyLayout
from statestore.redis.scripts import CLEAR_SCOPE, CLEAR_TASK, DELETE, SET, Script

__all__ = ["SECTION", "RedisStoreBackend"]

SECTION = "statestore_redis"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)
_RETRYABLE = (redis.ConnectionError, redis.TimeoutError)
_DEFAULTS: dict[str, str] = {
    "url": "redis://127.0.0.1:6379/0",
    "key_prefix": "statestore:",
    "client_name": "statestore",
    "socket_timeout": "5",
    "socket_connect_timeout": "5",
    "retry_attempts": "3",
    "retry_backoff_base": "0.05",
    "retry_backoff_cap": "2",
    "max_connections": "0",
}


_Call = tuple[Script, list[str], list[str]]
"""A script invocation: the script, its keys and its arguments."""


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


def _packed(*parts: bytes) -> list[bytes]:
    """One command in the Redis protocol (RESP), ready for ``Connection.send_packed_command``."""
    return [b"*%d\r\n%b" % (len(parts), b"".join(b"$%d\r\n%b\r\n" % (len(part), part) for part in parts))]


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
        if isinstance(exc, redis.RedisError):
            raise StorageError(
                f"Redis {self.operation} failed at {self.location}: "
                f"{type(exc).__name__}: {mask_secret('url', str(exc))}. "
                f"Check that the server is reachable and the [{SECTION}] settings are right."
            ) from exc


class _ThreadClient(threading.local):
    client: redis.Redis | None = None
    pid = 0


class RedisStoreBackend(BaseStoreBackend):
    """Redis strings with native expiry and per-scope indexes; see the module docstring.

    Settings come from ``[statestore_redis]`` (``url``, ``key_prefix``, ``username``, ``password``,
    ``client_name``, ``socket_timeout``, ``socket_connect_timeout``, ``retry_attempts``,
    ``retry_backoff_base``, ``retry_backoff_cap``, ``max_connections``); keyword arguments
    override them, and the no-argument constructor works from configuration alone. Connections
    open lazily; connection errors and timeouts are retried with exponential backoff (every
    operation is idempotent, so a retry after a lost reply is safe).
    """

    name = "redis"
    reference_scheme = "redis"

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
        config: Config | None = None,
    ) -> None:
        super().__init__(config=config)
        self.url = url if url is not None else self._setting("url")
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"[{SECTION}] url must start with redis://, rediss:// or unix://, got {mask_secret('url', self.url)!r}"
            )
        self.layout = KeyLayout(key_prefix if key_prefix is not None else self._setting("key_prefix"))
        attempts = retry_attempts if retry_attempts is not None else self._int("retry_attempts")
        base = retry_backoff_base if retry_backoff_base is not None else self._float("retry_backoff_base")
        cap = retry_backoff_cap if retry_backoff_cap is not None else self._float("retry_backoff_cap")
        if attempts < 0 or base < 0 or cap < 0:
            raise ConfigurationError(
                f"[{SECTION}] retry_attempts, retry_backoff_base and retry_backoff_cap must be >= 0, "
                f"got {attempts}, {base}, {cap}"
            )
        self._backoff = (attempts, base, cap)
        options: dict[str, Any] = {
            "username": username if username is not None else self.config.get(SECTION, "username"),
            "password": password if password is not None else self.config.get(SECTION, "password"),
            "client_name": client_name if client_name is not None else self._setting("client_name"),
            "socket_timeout": socket_timeout if socket_timeout is not None else self._float("socket_timeout"),
            "socket_connect_timeout": (
                socket_connect_timeout if socket_connect_timeout is not None else self._float("socket_connect_timeout")
            ),
            "max_connections": (max_connections if max_connections is not None else self._int("max_connections"))
            or None,
        }
        # redis-py lets settings in the URL (credentials, ?socket_timeout=...) win over these.
        self._options = {k: v for k, v in options.items() if v not in (None, "")}
        try:
            self._pool = redis.ConnectionPool.from_url(
                self.url, retry=Retry(ExponentialBackoff(cap, base), attempts, _RETRYABLE), **self._options
            )
        except ValueError as exc:
            raise ConfigurationError(f"[{SECTION}] url {mask_secret('url', self.url)!r} is invalid: {exc}") from None
        self._location = f"{mask_secret('url', self.url)} key_prefix={self.key_prefix}"
        self._thread = _ThreadClient()
        self._aclients: dict[asyncio.AbstractEventLoop, tuple[aredis.Redis, asyncio.Task[None]]] = {}

    # -- configuration -------------------------------------------------------------------------------

    def _setting(self, key: str) -> str:
        return (self.config.get(SECTION, key, fallback=_DEFAULTS[key]) or "").strip()

    def _int(self, key: str) -> int:
        return self.config.getint(SECTION, key, fallback=int(_DEFAULTS[key]), minimum=0)

    def _float(self, key: str) -> float:
        value = self.config.getfloat(SECTION, key, fallback=float(_DEFAULTS[key]))
        if value < 0:
            raise ConfigurationError(f"[{SECTION}] {key} must be >= 0, got {value}")
        return value

    @property
    def key_prefix(self) -> str:
        """The prefix of every Redis key this backend writes."""
        return self.layout.prefix

    @property
    def location(self) -> str:
        """The server URL (password masked) and key prefix: where this backend keeps data."""
        return self._location

    # -- clients ---------------------------------------------------------------------------------------

    def _sync(self) -> redis.Redis:
        """The calling thread's client, holding one pooled connection for the thread's lifetime.

        Checking a connection out of the pool costs about as much as a loopback round trip in
        redis-py, so each thread keeps its own; a forked child opens new ones.
        """
        local = self._thread
        if local.client is None or local.pid != os.getpid():
            local.client = redis.Redis(connection_pool=self._pool, single_connection_client=True)
            local.pid = os.getpid()
        return local.client

    def _aclient(self) -> aredis.Redis:
        """The asyncio client of the running event loop (redis.asyncio connections belong to one loop).

        A guard task, cancelled when the loop shuts down (``asyncio.run`` and ``asyncio.Runner``
        cancel pending tasks before closing), closes the client's connections inside that loop.
        """
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is None:
            attempts, base, cap = self._backoff
            client = aredis.Redis.from_url(
                self.url, retry=AsyncRetry(ExponentialBackoff(cap, base), attempts, _RETRYABLE), **self._options
            )
            entry = self._aclients[loop] = (client, loop.create_task(self._close_with_loop(loop, client)))
        return entry[0]

    async def _close_with_loop(self, loop: asyncio.AbstractEventLoop, client: aredis.Redis) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            self._aclients.pop(loop, None)
            await client.aclose()

    def close(self) -> None:
        """Close the sync connections of every thread (they reopen on next use)."""
        client, self._thread.client = self._thread.client, None
        if client is not None:
            client.close()
        self._pool.disconnect()

    async def aclose(self) -> None:
        """Close the asyncio connections of the running event loop (they reopen on next use)."""
        entry = self._aclients.get(asyncio.get_running_loop())
        if entry is not None:
            entry[1].cancel()
            await asyncio.wait([entry[1]])  # the guard closes the client; its cancellation stays inside it

    def _errors(self, operation: str) -> _Errors:
        """A context turning redis-py errors (left after retries) into ``StorageError``, password masked."""
        return _Errors(self.location, operation)

    def _command(self, *parts: bytes) -> Any:
        """Send one command on the thread's connection and return the server's raw reply.

        The hot path of ``get``, ``set`` and ``delete``: redis-py's generic ``execute_command``
        (argument packing, instrumentation hooks) adds about 10 µs per command, a third of a
        loopback round trip, so this packs the command itself and keeps what matters here: the
        configured retry with backoff, and a disconnect after a failed attempt so that the next one
        starts on a fresh socket. It leaves out redis-py's per-command OpenTelemetry metrics and
        maintenance-notification reconnects (a moved endpoint then shows as a retried connection error).
        """
        connection = self._sync().connection
        assert connection is not None  # a single-connection client holds its connection until closed
        packed = _packed(*parts)

        def attempt() -> Any:
            connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
            return connection.read_response()

        return connection.retry.call_with_retry(attempt, lambda _error: connection.disconnect())  # type: ignore[no-untyped-call]

    async def _acommand(self, *parts: bytes) -> Any:
        """The asyncio twin of :meth:`_command`, on a connection of the event loop's pool.

        redis.asyncio disconnects a connection whose reply a cancelled task left unread, so
        returning it to the pool is safe.
        """
        pool = self._aclient().connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        packed = _packed(*parts)

        async def attempt() -> Any:
            await connection.send_packed_command(packed)
            return await connection.read_response()

        try:
            return await connection.retry.call_with_retry(attempt, lambda _error: connection.disconnect())
        finally:
            await pool.release(connection)

    @staticmethod
    def _script_args(keys: list[str], args: list[str]) -> list[bytes]:
        return [str(len(keys)).encode(), *(part.encode() for part in keys), *(part.encode() for part in args)]

    def _run(self, script: Script, keys: list[str], args: list[str]) -> Any:
        encoded = self._script_args(keys, args)
        try:
            return self._command(b"EVALSHA", script.sha.encode(), *encoded)
        except NoScriptError:
            return self._command(b"EVAL", script.source.encode(), *encoded)

    async def _arun(self, script: Script, keys: list[str], args: list[str]) -> Any:
        encoded = self._script_args(keys, args)
        try:
            return await self._acommand(b"EVALSHA", script.sha.encode(), *encoded)
        except NoScriptError:
            return await self._acommand(b"EVAL", script.source.encode(), *encoded)

    # -- script arguments, shared by sync and async ---------------------------------------------------

    def _set_call(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None) -> _Call:
        return (
            SET,
            [self.layout.value_key(scope, key), *self.layout.tracking_keys(scope)],
            [f"{_expiry_ms(expires_at)}:{value}"],
        )

    def _delete_call(self, scope: StoreScope, key: str) -> _Call:
        return DELETE, [self.layout.value_key(scope, key), *self.layout.tracking_keys(scope)], []

    def _clear_call(self, scope: StoreScope, all_map_indices: bool) -> _Call:
        if all_map_indices and isinstance(scope, TaskScope):
            return CLEAR_TASK, [self.layout.maps_key(scope)], [self.layout.tag(scope)]
        return CLEAR_SCOPE, list(self.layout.tracking_keys(scope)), []

    @staticmethod
    def _live_min() -> str:
        """The ``ZRANGEBYSCORE`` lower bound that skips index entries already expired."""
        return f"({_expiry_ms(utcnow())}"

    # -- sync primitives ------------------------------------------------------------------------------

    def _get(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        with self._errors("GET"):
            return _entry(self._command(b"GET", self.layout.value_key(scope, key).encode()))

    def _set(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        with self._errors("SET"):
            self._run(*self._set_call(scope, key, value, expires_at))

    def _delete(self, scope: StoreScope, key: str, session: Any) -> None:
        with self._errors("DELETE"):
            self._run(*self._delete_call(scope, key))

    def _clear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        with self._errors("CLEAR"):
            self._run(*self._clear_call(scope, all_map_indices))

    def _keys(self, scope: StoreScope, session: Any) -> list[str]:
        with self._errors("ZRANGEBYSCORE"):
            members = self._sync().zrangebyscore(self.layout.index_key(scope), self._live_min(), "+inf")
        return _decode_members(members)

    # -- async primitives -----------------------------------------------------------------------------

    async def _aget(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        with self._errors("GET"):
            return _entry(await self._acommand(b"GET", self.layout.value_key(scope, key).encode()))

    async def _aset(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        with self._errors("SET"):
            await self._arun(*self._set_call(scope, key, value, expires_at))

    async def _adelete(self, scope: StoreScope, key: str, session: Any) -> None:
        with self._errors("DELETE"):
            await self._arun(*self._delete_call(scope, key))

    async def _aclear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        with self._errors("CLEAR"):
            await self._arun(*self._clear_call(scope, all_map_indices))

    async def _akeys(self, scope: StoreScope, session: Any) -> list[str]:
        with self._errors("ZRANGEBYSCORE"):
            members = await self._aclient().zrangebyscore(self.layout.index_key(scope), self._live_min(), "+inf")
        return _decode_members(members)

    # -- worker-side references -----------------------------------------------------------------------

    def reference_for(self, scope: StoreScope, key: str) -> str:
        """``redis://<the Redis key holding the value>``: a pure function of ``(scope, key)`` and the prefix."""
        return "redis://" + self.layout.value_key(to_scope(scope), key)

    def resolve_reference(self, reference: str) -> tuple[StoreScope, str]:
        """Invert :meth:`reference_for`; refuse anything that is not a value key under this backend's prefix."""
        if not isinstance(reference, str) or not reference.startswith("redis://"):
            raise InvalidReferenceError(
                f"RedisStoreBackend refuses reference {reference!r}: it does not start with 'redis://'"
            )
        try:
            return self.layout.parse_value_key(reference[len("redis://") :])
        except ValueError as exc:
            raise InvalidReferenceError(
                f"RedisStoreBackend refuses reference {reference!r}: {exc} "
                f"(this backend only reads value keys under key_prefix {self.key_prefix!r})"
            ) from None
